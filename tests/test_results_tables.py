"""Results tables that do not flatter: traced to their JSON files, the stack (one threshold) first.

The ISBI challenge scored its stack with one threshold; a per-image mean lets
each image pick its own and reads better. These tests keep the docs' tables
equal to what `benchmarks/tables.py` builds from `benchmarks/results/`, and
the benchmark's own printout stack first.
"""

import contextlib
import io
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import accuracy_isbi  # noqa: E402
import tables  # noqa: E402

DOCS = ["docs/RESULTS.md", "README.md"]


def test_every_table_in_the_docs_is_rebuilt_from_the_json_files():
    found = {}
    for doc in DOCS:
        for name, content in tables.blocks((ROOT / doc).read_text()).items():
            assert content == tables.markdown(name), (
                f"{doc}: table {name!r} is not what its JSON files say; run `python benchmarks/tables.py --write {doc}`")
            found.setdefault(name, doc)
    assert set(found) == set(tables.TABLES), f"tables missing from the docs: {set(tables.TABLES) - set(found)}"


def test_results_show_the_stack_before_the_per_image_mean():
    text = (ROOT / "docs" / "RESULTS.md").read_text()
    assert text.index("<!-- tables.py isbi-stack -->") < text.index("<!-- tables.py isbi-mean -->")


def test_isbi_tables_read_each_part_from_its_own_key():
    """Every Rand cell of the stack table is the JSON's stack figure, of the mean table its per-image mean."""
    for part, name in (("stack", "isbi-stack"), ("mean", "isbi-mean")):
        rows = [line.split(" | ") for line in tables.TABLES[name]()[2:]]
        expected = [tables.fmt(r[part]["rand_error"]) for run in tables.PAIRED
                    for r in tables.load(run.scored)["results"].values()]
        assert [cells[5].strip("*") for cells in rows] == expected, part


def test_the_accuracy_benchmark_prints_the_stack_first():
    def scores(value):
        return dict.fromkeys(accuracy_isbi.KEYS, value)

    results = {"unetkit-default": {"parameters": 1, "train_steps": 2, "inference_s_per_512": 0.1,
                                   "stack": scores(0.0629), "mean": scores(0.0463)}}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        accuracy_isbi.print_table(results)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("-- stack, one threshold"), lines[0]
    assert "0.0629" in lines[2] and "0.0463" not in lines[2]
    assert lines[3].startswith("-- per-image mean, own best thresholds") and "0.0463" in lines[5]
