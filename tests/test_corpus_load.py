import json

import pytest

from leakaudit.corpus.load import Document, load_corpus, save_jsonl
from leakaudit.errors import InputError


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_jsonl_basic_ids_and_lines(tmp_path):
    p = _write(tmp_path / "c.jsonl", (
        b'{"id": "a", "text": "first doc"}\n'
        b'\n'
        b'{"text": "no id here"}\n'
        b'{"id": 7, "text": "numeric id"}\n'
        b'{"id": "blank", "text": "   "}\n'
    ))
    docs = load_corpus(p)
    assert [d.id for d in docs] == ["a", "c.jsonl:3", "7"]
    assert [d.text for d in docs] == ["first doc", "no id here", "numeric id"]
    assert [d.line for d in docs] == [1, 3, 4]
    assert all(d.source == str(p) for d in docs)


def test_jsonl_custom_fields_and_no_id(tmp_path):
    p = _write(tmp_path / "c.jsonl", b'{"id": "x", "body": "hello"}\n')
    assert load_corpus(p, text_field="body", id_field=None) == [
        Document(id="c.jsonl:1", text="hello", source=str(p), line=1)]


def test_malformed_json_line_number(tmp_path):
    p = _write(tmp_path / "bad.jsonl", b'{"text": "a"}\n{"text": "b"}\n{"text": oops}\n')
    with pytest.raises(InputError) as e:
        load_corpus(p)
    msg = str(e.value)
    assert f"{p}:3:" in msg and "malformed JSON" in msg
    assert e.value.line == 3


def test_missing_or_non_string_text_field(tmp_path):
    p = _write(tmp_path / "c.jsonl", b'{"text": "ok"}\n{"body": "x"}\n')
    with pytest.raises(InputError, match=r":2: .*'text'"):
        load_corpus(p)
    p2 = _write(tmp_path / "d.jsonl", b'{"text": 5}\n')
    with pytest.raises(InputError, match=r":1: field 'text' is a number"):
        load_corpus(p2)
    p3 = _write(tmp_path / "e.jsonl", b'["not", "an object"]\n')
    with pytest.raises(InputError, match=r":1: expected a JSON object"):
        load_corpus(p3)


def test_non_utf8_reports_line_and_byte(tmp_path):
    p = _write(tmp_path / "c.jsonl", b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(InputError) as e:
        load_corpus(p)
    msg = str(e.value)
    assert ":2:" in msg and "UTF-8" in msg and "0xE9" in msg and "column 14" in msg


def test_txt_lines_and_utf8(tmp_path):
    p = _write(tmp_path / "c.txt", "un\n\n  \ndeux é\r\ntrois 日本\n".encode())
    docs = load_corpus(p)
    assert [(d.id, d.text, d.line) for d in docs] == [
        ("c.txt:1", "un", 1), ("c.txt:4", "deux é", 4), ("c.txt:5", "trois 日本", 5)]
    bad = _write(tmp_path / "bad.txt", b"ok\nbad \xff byte\n")
    with pytest.raises(InputError, match=r"bad\.txt:2: not valid UTF-8 \(byte 0xFF at column 5\)"):
        load_corpus(bad)


def test_bom_is_ignored(tmp_path):
    p = _write(tmp_path / "c.jsonl", b'\xef\xbb\xbf{"text": "bom"}\n')
    assert load_corpus(p)[0].text == "bom"


def test_empty_corpus(tmp_path):
    for name, data in (("e.jsonl", b""), ("e.txt", b"\n \n"), ("f.jsonl", b'{"text": ""}\n')):
        with pytest.raises(InputError, match="empty"):
            load_corpus(_write(tmp_path / name, data))
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(InputError, match="corpus is empty"):
        load_corpus(tmp_path / "emptydir")


def test_missing_path_and_unknown_suffix(tmp_path):
    with pytest.raises(InputError, match="no such file or directory") as e:
        load_corpus(tmp_path / "nope.jsonl")
    assert str(tmp_path / "nope.jsonl") in str(e.value)
    with pytest.raises(InputError, match=r"unsupported corpus format '\.csv'.*\.jsonl"):
        load_corpus(_write(tmp_path / "c.csv", b"a,b\n"))


def test_json_array_and_json_lines(tmp_path):
    arr = _write(tmp_path / "a.json", json.dumps([{"id": "p", "text": "one"}, {"text": "two"}]).encode())
    assert [(d.id, d.text) for d in load_corpus(arr)] == [("p", "one"), ("a.json:2", "two")]
    lines = _write(tmp_path / "b.json", b'{"text": "x"}\n{"text": "y"}\n')
    assert [d.text for d in load_corpus(lines)] == ["x", "y"]
    bad = _write(tmp_path / "c.json", json.dumps([{"text": "ok"}, {"body": 1}]).encode())
    with pytest.raises(InputError, match="item 2"):
        load_corpus(bad)


def test_directory(tmp_path):
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "b.txt").write_text("whole file\nsecond line\n", encoding="utf-8")
    (root / "sub" / "a.txt").write_text("nested", encoding="utf-8")
    (root / "sub" / "empty.txt").write_text("  \n", encoding="utf-8")
    (root / "c.jsonl").write_text('{"text": "from jsonl"}\n', encoding="utf-8")
    (root / ".hidden" / "x.txt").write_text("ignored", encoding="utf-8")
    (root / "notes.md").write_text("ignored", encoding="utf-8")
    docs = load_corpus(root)
    assert [(d.id, d.text, d.line) for d in docs] == [
        ("b.txt", "whole file\nsecond line\n", None),
        ("c.jsonl:1", "from jsonl", 1),
        ("sub/a.txt", "nested", None),
    ]
    (root / "sub" / "bad.txt").write_bytes(b"line one\nline \xc3(two\n")
    with pytest.raises(InputError, match=r"bad\.txt:2: not valid UTF-8 \(byte 0xC3 at column 6\)"):
        load_corpus(root)


def test_parquet_round_trip(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    p = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": [10, 11, 12], "text": ["alpha", None, "gamma é"]}), p)
    docs = load_corpus(p)
    assert [(d.id, d.text) for d in docs] == [("10", "alpha"), ("12", "gamma é")]
    q = tmp_path / "noid.parquet"
    pq.write_table(pa.table({"body": ["x", "y"]}), q)
    assert [d.id for d in load_corpus(q, text_field="body")] == ["noid.parquet:1", "noid.parquet:2"]
    with pytest.raises(InputError, match=r"no column 'text' \(columns: body\)"):
        load_corpus(q)
    r = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), r)
    with pytest.raises(InputError, match="expected strings"):
        load_corpus(r)
    with pytest.raises(InputError, match="Parquet"):
        load_corpus(_write(tmp_path / "junk.parquet", b"not parquet at all"))


def test_save_jsonl_round_trip(tmp_path):
    docs = [Document("a", "one ☃", "x", 1), Document("b", 'quote " and\nnewline', "x", 2)]
    out = save_jsonl(docs, tmp_path / "sub" / "out.jsonl")
    assert out.read_text(encoding="utf-8").count("\n") == 2
    again = load_corpus(out)
    assert [(d.id, d.text) for d in again] == [("a", "one ☃"), ("b", 'quote " and\nnewline')]
    assert [f.name for f in out.parent.iterdir()] == ["out.jsonl"]  # no temp file left behind
