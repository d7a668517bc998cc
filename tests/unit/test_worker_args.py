"""What of the submitter's command line reaches the workers' sessions."""

from cli.pytest.wire import worker_args


def test_dtf_options_and_report_only_options_stay_here() -> None:
    args = ["--dtf", "tests", "-v", "--dtf-reruns", "2", "--dtf-dist=loadscope", "-k", "x y",
            "--junit-xml", "out.xml", "--junitxml=o.xml", "--durations=5", "--durations", "3",
            "--timeout", "60", "-p", "no:cacheprovider", "--allow-unmatched", "-x"]
    assert worker_args(args) == ("tests", "-v", "-k", "x y", "--timeout", "60", "-p",
                                 "no:cacheprovider", "-x")
