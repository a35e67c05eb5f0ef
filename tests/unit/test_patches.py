"""JSON Patch (RFC 6902) and JSON merge patch (RFC 7386), with the RFCs' own examples."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetflow.errors import InvalidRequest
from fleetflow.patches import PatchOp, json_equal, json_patch, merge_patch, parse_ops, pointer

scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3)
keys = st.text(alphabet="ab/~0-", min_size=1, max_size=3)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=12,
)
documents = st.dictionaries(keys, json_values, max_size=4)


def escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


# --- RFC 6902 appendix A ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "ops", "expected"),
    [
        (
            {"foo": "bar"},
            [{"op": "add", "path": "/baz", "value": "qux"}],
            {"foo": "bar", "baz": "qux"},
        ),
        (
            {"foo": ["bar", "baz"]},
            [{"op": "add", "path": "/foo/1", "value": "qux"}],
            {"foo": ["bar", "qux", "baz"]},
        ),
        ({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
        (
            {"foo": ["bar", "qux", "baz"]},
            [{"op": "remove", "path": "/foo/1"}],
            {"foo": ["bar", "baz"]},
        ),
        (
            {"baz": "qux", "foo": "bar"},
            [{"op": "replace", "path": "/baz", "value": "boo"}],
            {"baz": "boo", "foo": "bar"},
        ),
        (
            {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
            [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
            {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
        ),
        (
            {"foo": ["all", "grass", "cows", "eat"]},
            [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
            {"foo": ["all", "cows", "eat", "grass"]},
        ),
        (
            {"baz": "qux", "foo": ["a", 2, "c"]},
            [
                {"op": "test", "path": "/baz", "value": "qux"},
                {"op": "test", "path": "/foo/1", "value": 2},
            ],
            {"baz": "qux", "foo": ["a", 2, "c"]},
        ),
        (
            {"foo": "bar"},
            [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
            {"foo": "bar", "child": {"grandchild": {}}},
        ),
        (
            {"foo": ["bar"]},
            [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
            {"foo": ["bar", ["abc", "def"]]},
        ),
        ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}], {"/": 9, "~1": 10}),
        ({"foo": None}, [{"op": "test", "path": "/foo", "value": None}], {"foo": None}),
        ({"foo": 1}, [{"op": "copy", "from": "/foo", "path": "/bar"}], {"foo": 1, "bar": 1}),
        ({"foo": 1}, [{"op": "replace", "path": "", "value": [1]}], [1]),
        ({"foo": 1}, [{"op": "move", "from": "/foo", "path": "/foo"}], {"foo": 1}),
    ],
)
def test_rfc_6902_examples(doc: Any, ops: list[dict[str, Any]], expected: Any) -> None:
    before = copy.deepcopy(doc)
    assert json_patch(doc, ops) == expected
    assert doc == before  # the input is never changed


@pytest.mark.parametrize(
    ("doc", "op", "message"),
    [
        (
            {"foo": "bar"},
            {"op": "add", "path": "/baz/bat", "value": "qux"},
            "operation 0 (add /baz/bat)",
        ),
        (
            {"baz": "qux"},
            {"op": "test", "path": "/baz", "value": "bar"},
            "value there is different",
        ),
        ({"/": 9, "~1": 10}, {"op": "test", "path": "/~01", "value": "10"}, "different"),
        ({"foo": [1]}, {"op": "remove", "path": "/foo/1"}, "index 1 is out of range"),
        ({"foo": [1]}, {"op": "add", "path": "/foo/01", "value": 0}, "'01' is not an array index"),
        (
            {"foo": [1]},
            {"op": "replace", "path": "/foo/-", "value": 0},
            "'-' is not an array index",
        ),
        ({"foo": 1}, {"op": "replace", "path": "/bar", "value": 0}, "no member 'bar'"),
        ({"foo": 1}, {"op": "remove", "path": ""}, "cannot remove the whole document"),
        ({"a": {"b": 1}}, {"op": "move", "from": "/a", "path": "/a/b/c"}, "own children"),
        ({"a": "text"}, {"op": "add", "path": "/a/b", "value": 1}, "parent is not an object"),
        ({"foo": True}, {"op": "test", "path": "/foo", "value": 1}, "different"),
    ],
)
def test_an_operation_that_does_not_apply_is_one_line_naming_it(
    doc: Any, op: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(message)) as caught:
        json_patch(doc, [op])
    assert "\n" not in str(caught.value)


def test_a_failing_patch_leaves_nothing_half_done_and_names_its_position() -> None:
    doc = {"a": 1}
    ops = [{"op": "add", "path": "/b", "value": 2}, {"op": "remove", "path": "/nope"}]
    with pytest.raises(InvalidRequest, match=r"^JSON patch operation 1 \(remove /nope\)"):
        json_patch(doc, ops)
    assert doc == {"a": 1}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"op": "add", "path": "/a"}, "is a list of operations, got dict"),
        ([{"op": "add", "path": "/a"}], "add needs a value"),
        ([{"op": "move", "path": "/a"}], "move needs a from"),
        ([{"op": "frobnicate", "path": "/a"}], "op: Input should be"),
        ([{"op": "remove", "path": "a"}], "must be empty or start with /"),
        ([{"op": "remove", "path": "/a~2"}], "~ not followed by 0 or 1"),
        ([{"op": "remove", "path": "/a", "extra": 1}], "extra: Extra inputs"),
    ],
)
def test_malformed_operations_are_refused_before_anything_applies(raw: Any, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_ops(raw)


def test_pointer_unescapes_rfc_6901_tokens() -> None:
    assert pointer("") == []
    assert pointer("/") == [""]
    assert pointer("/a~1b/m~0n/~01") == ["a/b", "m~n", "~1"]
    assert PatchOp.model_validate({"op": "add", "path": "/x", "value": None}).value is None


def test_json_equality_is_jsons() -> None:
    assert json_equal({"a": [1, 2.0]}, {"a": [1.0, 2]})
    assert not json_equal(True, 1)
    assert not json_equal(0, False)
    assert not json_equal([1], [1, 1])
    assert not json_equal({"a": 1}, {"a": 1, "b": None})
    assert not json_equal("1", 1)


# --- properties ------------------------------------------------------------------------------


@given(doc=documents, key=keys, value=json_values)
def test_add_then_remove_restores_an_object(doc: dict[str, Any], key: str, value: Any) -> None:
    doc.pop(key, None)
    path = "/" + escape(key)
    added = json_patch(doc, [{"op": "add", "path": path, "value": value}])
    assert json_equal(added[key], value)
    assert json_patch(added, [{"op": "remove", "path": path}]) == doc


@given(items=st.lists(json_values, max_size=5), data=st.data(), value=json_values)
def test_add_then_remove_restores_an_array(
    items: list[Any], data: st.DataObject, value: Any
) -> None:
    index = data.draw(st.integers(0, len(items)))
    doc = {"list": items}
    added = json_patch(doc, [{"op": "add", "path": f"/list/{index}", "value": value}])
    assert len(added["list"]) == len(items) + 1
    assert json_patch(added, [{"op": "remove", "path": f"/list/{index}"}]) == doc
    appended = json_patch(doc, [{"op": "add", "path": "/list/-", "value": value}])
    assert json_equal(appended["list"][-1], value)


@given(doc=documents, data=st.data())
def test_test_op_passes_for_what_is_there_and_fails_for_anything_else(
    doc: dict[str, Any], data: st.DataObject
) -> None:
    if not doc:
        return
    key = data.draw(st.sampled_from(sorted(doc)))
    path = "/" + escape(key)
    assert json_patch(doc, [{"op": "test", "path": path, "value": doc[key]}]) == doc
    other = data.draw(json_values.filter(lambda v: not json_equal(v, doc[key])))
    with pytest.raises(InvalidRequest, match=re.escape(f"test {path}")):
        json_patch(doc, [{"op": "test", "path": path, "value": other}])


@given(doc=documents, value=json_values, data=st.data())
def test_replace_then_test_and_copy_then_test(
    doc: dict[str, Any], value: Any, data: st.DataObject
) -> None:
    if not doc:
        return
    key = data.draw(st.sampled_from(sorted(doc)))
    path = "/" + escape(key)
    ops = [
        {"op": "replace", "path": path, "value": value},
        {"op": "test", "path": path, "value": value},
        {"op": "copy", "from": path, "path": "/copied~1here"},
        {"op": "test", "path": "/copied~1here", "value": value},
    ]
    patched = json_patch(doc, ops)
    assert json_equal(patched["copied/here"], value)


@given(doc=documents, data=st.data())
def test_move_there_and_back_restores(doc: dict[str, Any], data: st.DataObject) -> None:
    if not doc:
        return
    key = data.draw(st.sampled_from(sorted(doc)))
    there, back = "/" + escape(key), "/moved"
    if key == "moved":
        return
    doc.pop("moved", None)
    moved = json_patch(doc, [{"op": "move", "from": there, "path": back}])
    assert key not in moved
    assert json_patch(moved, [{"op": "move", "from": back, "path": there}]) == doc


def no_nulls(value: Any) -> bool:
    if isinstance(value, dict):
        return all(v is not None and no_nulls(v) for v in value.values())
    if isinstance(value, list):
        return all(no_nulls(v) for v in value)
    return True


@given(doc=documents.filter(no_nulls))
def test_merge_patch_of_a_document_with_itself_is_identity(doc: dict[str, Any]) -> None:
    assert merge_patch(doc, doc) == doc


@given(target=documents, patch=documents)
def test_merge_patch_is_idempotent_and_leaves_its_inputs(
    target: dict[str, Any], patch: dict[str, Any]
) -> None:
    before = (copy.deepcopy(target), copy.deepcopy(patch))
    once = merge_patch(target, patch)
    assert merge_patch(once, patch) == once
    assert (target, patch) == before
    for key, value in patch.items():
        assert (key not in once) if value is None else key in once


def test_merge_patch_follows_rfc_7386_appendix() -> None:
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge_patch({"a": "b", "b": "c"}, {"a": None}) == {"b": "c"}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert merge_patch([1, 2], {"a": "b", "c": None}) == {"a": "b"}
    assert merge_patch({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}
