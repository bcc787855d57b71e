"""A generic toolkit for domains whose tools are plain Python callables over a typed database.

Why: every python-callable domain needs the same plumbing — OpenAI function schemas derived from
type hints and docstrings, argument validation/coercion, errors returned as results, a private
database per episode, dual control (user-side tools and DB), and named assertion functions for
tau2-style env assertions. Writing it once here keeps each domain down to its tools and data.

A tool is a function whose first parameter receives the database (a pydantic model, mutated in
place by write tools) and whose remaining parameters are the call's arguments:

    @tool(kind="write")
    def cancel_rental(db: ShopDB, rental_id: str) -> dict:
        '''Cancel a reserved rental.

        Args:
            rental_id: The rental's id, such as "R2051".
        '''

The schema comes from the signature (pydantic) and the docstring (docstring_parser); arguments
are validated by a pydantic model built from the same signature, so schema and validation agree;
`Annotated` constraints (pattern, length, bounds) appear in both.
Domain-level failures raise `ToolError`; the environment turns every failure into an error result.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import docstring_parser
import pydantic
import pydantic_core

from data_agents.domains.task import EnvAssertion, InitialState, Requestor
from data_agents.env import Environment, ToolResult

ToolKind = Literal["read", "write", "generic"]


class ToolError(Exception):
    """A domain-level failure (unknown id, not available, ...); its text is shown to the caller."""


@dataclasses.dataclass(frozen=True)
class Tool:
    """A callable plus what the toolkit derived from it (schema, argument model, kind)."""

    func: Callable[..., Any]
    name: str
    kind: ToolKind
    description: str
    args_model: type[pydantic.BaseModel]

    @property
    def mutates(self) -> bool:
        """Only write tools may change the database."""
        return self.kind == "write"

    def schema(self) -> dict[str, Any]:
        """OpenAI function schema: {"type": "function", "function": {name, description, ...}}."""
        params = _strip_titles(self.args_model.model_json_schema())
        params.setdefault("properties", {})
        params.setdefault("required", [])
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": params},
        }

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Validated, coerced keyword arguments; raises `pydantic.ValidationError`."""
        model = self.args_model.model_validate(dict(arguments))
        return {name: getattr(model, name) for name in type(model).model_fields}

    def __call__(self, db: Any, **arguments: Any) -> Any:
        return self.func(db, **self.validate(arguments))


def tool(
    func: Callable[..., Any] | None = None, *, kind: ToolKind = "read", name: str | None = None
) -> Any:
    """Decorator: turn a `(db, **args)` function into a `Tool` (usable bare or with options)."""

    def wrap(f: Callable[..., Any]) -> Tool:
        return make_tool(f, kind=kind, name=name)

    return wrap(func) if func is not None else wrap


def make_tool(
    func: Callable[..., Any], *, kind: ToolKind = "read", name: str | None = None
) -> Tool:
    """Build a `Tool` from a function; the first parameter is the database and is not exposed."""
    if kind not in ("read", "write", "generic"):
        raise ValueError(f"tool kind must be 'read', 'write' or 'generic', got {kind!r}")
    name = name or func.__name__
    doc = docstring_parser.parse(inspect.getdoc(func) or "")
    description = " ".join(p for p in (doc.short_description, doc.long_description) if p)
    if not description:
        raise ValueError(f"tool {name!r} needs a docstring: it is the model's only description")
    arg_docs = {p.arg_name: p.description for p in doc.params}
    params = list(inspect.signature(func).parameters.values())
    if not params or params[0].kind not in (
        params[0].POSITIONAL_ONLY,
        params[0].POSITIONAL_OR_KEYWORD,
    ):
        raise ValueError(f"tool {name!r}: the first parameter must receive the database")
    # include_extras: `Annotated[str, StringConstraints(pattern=...)]` must keep its metadata, or
    # the constraint vanishes from both the schema and the validation (a zip "ABCDEFGH" is stored).
    hints = typing.get_type_hints(func, include_extras=True)
    fields: dict[str, Any] = {}
    for p in params[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ValueError(f"tool {name!r}: *args/**kwargs cannot be described in a schema")
        if p.name not in hints:
            raise ValueError(f"tool {name!r}: parameter {p.name!r} needs a type hint")
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (hints[p.name], pydantic.Field(default, description=arg_docs.get(p.name)))
    model = pydantic.create_model(
        f"{name}_arguments", __config__=pydantic.ConfigDict(extra="forbid"), **fields
    )
    return Tool(func=func, name=name, kind=kind, description=description, args_model=model)


def _strip_titles(schema: Any) -> Any:
    """Drop pydantic's auto-generated `title`s: noise for the model, tokens for nothing."""
    if isinstance(schema, dict):
        return {
            k: _strip_titles(v)
            for k, v in schema.items()
            if not (k == "title" and isinstance(v, str))
        }
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema


def format_validation_error(tool_name: str, err: pydantic.ValidationError) -> str:
    """One line per problem, naming the argument: `rental_id: Field required`."""
    problems = []
    for e in err.errors():
        where = ".".join(str(x) for x in e["loc"]) or "arguments"
        problems.append(f"{where}: {e['msg']}")
    return f"Error: invalid arguments for {tool_name}: " + "; ".join(problems)


def to_text(value: Any) -> str:
    """Compact JSON for a tool's return value (strings pass through unchanged)."""
    if isinstance(value, str):
        return value
    return pydantic_core.to_json(value).decode()


def deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """`base` updated recursively by `update` (dicts merge, everything else replaces)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _index(tools: Iterable[Callable[..., Any] | Tool], what: str) -> dict[str, Tool]:
    index: dict[str, Tool] = {}
    for t in tools:
        t = t if isinstance(t, Tool) else make_tool(t)
        if t.name in index:
            raise ValueError(f"duplicate {what} name {t.name!r}")
        index[t.name] = t
    return index


class ToolkitEnvironment(Environment):
    """An `Environment` over pydantic databases and `Tool`s, one private copy per episode.

    `tools` act on `db` (the agent side); `user_tools` act on `user_db` (dual control, optional).
    `assertions` / `user_assertions` are named read-only functions `(db, **args) -> value` used by
    `run_assertion`. The databases passed in are deep-copied: the caller's objects never change.
    """

    def __init__(
        self,
        db: pydantic.BaseModel,
        tools: Iterable[Callable[..., Any] | Tool],
        *,
        user_db: pydantic.BaseModel | None = None,
        user_tools: Iterable[Callable[..., Any] | Tool] = (),
        assertions: Iterable[Callable[..., Any] | Tool] = (),
        user_assertions: Iterable[Callable[..., Any] | Tool] = (),
    ) -> None:
        super().__init__()
        self.db = db.model_copy(deep=True)
        self.user_db = user_db.model_copy(deep=True) if user_db is not None else None
        self._tools: dict[Requestor, dict[str, Tool]] = {
            "assistant": _index(tools, "tool"),
            "user": _index(user_tools, "user tool"),
        }
        if self._tools["user"] and self.user_db is None:
            raise ValueError("user_tools need a user_db to act on")
        self._assertions: dict[Requestor, dict[str, Tool]] = {
            "assistant": _index(assertions, "assertion"),
            "user": _index(user_assertions, "user assertion"),
        }

    # -- the Environment contract -------------------------------------------------------------
    def tools_schema(self, requestor: Requestor = "assistant") -> list[dict[str, Any]]:
        return [t.schema() for t in self._tools[_side(requestor)].values()]

    def tools(self, requestor: Requestor = "assistant") -> dict[str, Tool]:
        return dict(self._tools[_side(requestor)])

    def db_state(self, requestor: Requestor = "assistant") -> Any:
        db = self._db(requestor)
        return None if db is None else db.model_dump(mode="json")

    def _execute(self, name: str, arguments: dict[str, Any], requestor: Requestor) -> ToolResult:
        side = _side(requestor)
        t = self._tools[side].get(name)
        if t is None:
            known = ", ".join(sorted(self._tools[side])) or "none"
            return ToolResult(
                f"Error: unknown tool {name!r} for the {side}; known tools: {known}", error=True
            )
        try:
            kwargs = t.validate(arguments)
        except pydantic.ValidationError as e:
            return ToolResult(format_validation_error(name, e), error=True)
        try:
            value = t.func(self._db(side), **kwargs)
        except ToolError as e:
            return ToolResult(f"Error: {e}", error=True)
        except Exception as e:  # noqa: BLE001 - a buggy tool still must not end the episode
            return ToolResult(f"Error: {name} failed: {type(e).__name__}: {e}", error=True)
        return ToolResult(to_text(value))

    def run_assertion(self, assertion: EnvAssertion) -> bool:
        side = _side(assertion.env_type)
        fn = self._assertions[side].get(assertion.func_name)
        if fn is None:
            known = ", ".join(sorted(self._assertions[side])) or "none"
            raise ValueError(f"unknown {side} assertion {assertion.func_name!r}; known: {known}")
        db = self._db(side)
        if db is None:
            raise ValueError(f"assertion {assertion.func_name!r} needs a {side} database")
        return fn(db, **assertion.arguments) == assertion.assert_value

    # -- set-up ---------------------------------------------------------------------------------
    def apply_initial_state(self, state: InitialState | None) -> None:
        """Merge the task's initialization data, then run its initialization actions."""
        if state is None:
            return
        data = state.initialization_data
        if data is not None and data.agent_data:
            self.db = _merged(self.db, data.agent_data, "agent_data")
        if data is not None and data.user_data:
            if self.user_db is None:
                raise ValueError("task has user_data but this environment has no user database")
            self.user_db = _merged(self.user_db, data.user_data, "user_data")
        for action in state.initialization_actions or []:
            result = self.call(action.func_name, action.arguments, action.env_type)
            if result.error:
                raise ValueError(
                    f"initialization action {action.func_name} failed: {result.content}"
                )
        self.call_log.clear()  # set-up is not part of the episode

    def _db(self, requestor: Requestor) -> pydantic.BaseModel | None:
        return self.db if _side(requestor) == "assistant" else self.user_db


def _side(requestor: str) -> Requestor:
    if requestor not in ("assistant", "user"):
        raise ValueError(f"requestor must be 'assistant' or 'user', got {requestor!r}")
    return requestor  # type: ignore[return-value]


def _merged(db: pydantic.BaseModel, update: Mapping[str, Any], what: str) -> pydantic.BaseModel:
    try:
        return type(db).model_validate(deep_merge(db.model_dump(mode="json"), update))
    except pydantic.ValidationError as e:
        raise ValueError(f"task {what} does not fit the database schema: {e}") from e
