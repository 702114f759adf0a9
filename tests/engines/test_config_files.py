"""A broken bundle config file is named (issue 21: MONAI's parser said only "Expecting ',' delimiter: line 16 column 5",
not which of a bundle's files it was)."""

from __future__ import annotations

import pytest

from monai_transfer.engines.workflow import load_config, read_config_file


@pytest.mark.parametrize(
    "name, text, said",
    [
        ("inference.json", '{"a": 1\n "b": 2}', "is not valid JSON: Expecting ',' delimiter at line 2"),
        ("train.yaml", "a: [1, 2\nb: 3\n", "is not valid YAML"),
        ("list.json", "[1, 2]", "holds a JSON/YAML object, not a list"),
    ],
)
def test_a_broken_config_file_is_named(tmp_path, name, text, said):
    path = tmp_path / name
    path.write_text(text)
    for read in (read_config_file, load_config):
        with pytest.raises(ValueError) as info:
            read(path)
        assert str(path) in str(info.value) and said in str(info.value)
        assert "\n" not in str(info.value)


def test_a_good_config_file_reads_as_before(tmp_path):
    (tmp_path / "a.json").write_text('{"a": 1, "b": {"c": "$@a"}}')
    assert read_config_file(tmp_path / "a.json") == load_config(tmp_path / "a.json") == {"a": 1, "b": {"c": "$@a"}}
