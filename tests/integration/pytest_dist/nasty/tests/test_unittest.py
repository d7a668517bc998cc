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
