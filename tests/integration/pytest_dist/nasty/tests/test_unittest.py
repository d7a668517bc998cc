import unittest


class TestCaseStyle(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.shared = [1]

    def test_ok(self):
        self.assertEqual(self.shared, [1])

    def test_fails(self):
        self.assertEqual({"k": 1}, {"k": 2})

    @unittest.skip("unittest skip")
    def test_skipped(self):
        pass

    @unittest.expectedFailure
    def test_expected_failure(self):
        self.assertTrue(False)


def test_the_import_namespace_is_the_projects():
    # `tests` is this suite's own directory (a namespace package here), as in plain pytest:
    # no runner's checkout on sys.path shadows it
    import tests

    assert any(p.endswith("nasty/tests") or p.endswith("nasty") for p in tests.__path__), \
        list(tests.__path__)
