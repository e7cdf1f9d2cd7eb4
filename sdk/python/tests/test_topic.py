"""The Python topic builder against the shared vectors (tests/topic-vectors.json)."""

import json
import pathlib
import sys
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "sdk" / "python"))

from ws_router import canonical_json, default_topic  # noqa: E402


class SharedVectors(unittest.TestCase):
    def test_every_vector_byte_for_byte(self):
        doc = json.loads((ROOT / "tests" / "topic-vectors.json").read_text(encoding="utf-8"))
        self.assertGreater(len(doc["vectors"]), 10)
        for v in doc["vectors"]:
            with self.subTest(note=v["note"]):
                got = default_topic(v["route"], json.loads(v["request"]))
                self.assertEqual(got.encode("utf-8"), v["topic"].encode("utf-8"))

    def test_tuples_are_arrays_and_non_json_is_refused(self):
        self.assertEqual(canonical_json({"a": (1, None)}), '{"a":[1,""]}')
        with self.assertRaises(TypeError):
            canonical_json({"a": object()})
        with self.assertRaises(ValueError):
            canonical_json(float("nan"))


if __name__ == "__main__":
    unittest.main()
