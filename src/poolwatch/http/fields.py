"""Field rules shared by request validation, the OpenAPI document and the config file.

One :class:`Field` states a rule once ("an integer >= 1 or null"); the same object
checks a value, words the error message and renders the JSON Schema, so the three
can never disagree.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from poolwatch.options import POOL_NAME_RE, Setting, bounds_text, show

__all__ = [
    "POOL_NAME_PATTERN",
    "Field",
    "FieldError",
    "check_object",
    "did_you_mean",
    "show",
]

Kind = Literal["integer", "number", "string", "boolean", "array", "object"]

#: Pool names are metric label values; the engine enforces the same rule.
POOL_NAME_PATTERN = POOL_NAME_RE.pattern

_ARTICLE = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "array": "an array",
    "object": "an object",
}

#: The Python type a value of the other kinds must have.
_PLAIN_TYPES: dict[str, type] = {"boolean": bool, "array": list, "object": dict}


class FieldError(ValueError):
    """A value broke a field's rule. ``field`` is the label used in the message."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``'; did you mean "port"?'`` for a close match, else an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


@dataclass(frozen=True, slots=True)
class Field:
    """The rule for one named value.

    ``unit`` only words messages ("a number of seconds"). ``minimum``/``maximum`` are
    inclusive, ``exclusive_minimum`` strict. ``choices`` restricts strings.
    """

    name: str
    kind: Kind
    description: str
    required: bool = False
    nullable: bool = False
    minimum: float | None = None
    exclusive_minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    max_length: int | None = None
    unit: str = ""
    default: Any = None
    #: Overrides the wording of the type ("a table" instead of "an object").
    type_text: str | None = None
    #: The engine's own check of this value (see :mod:`poolwatch.options`): when set, it
    #: decides and words every refusal of a non-null value, so the API and the config file
    #: refuse exactly what the library refuses, in the same words.
    checker: Callable[[Any], Any] | None = None
    #: The whole rule in words, where it comes from the engine's setting.
    wording: str | None = None

    @classmethod
    def for_setting(cls, setting: Setting, description: str, **options: Any) -> Field:
        """The field of a pool setting: bounds, nullability and check from ``setting``."""
        return cls(
            setting.name,
            setting.kind,
            description,
            nullable=setting.nullable,
            minimum=setting.minimum,
            exclusive_minimum=setting.exclusive_minimum,
            maximum=setting.maximum,
            unit=setting.unit,
            checker=setting.check,
            wording=setting.rule(),
            **options,
        )

    # -- wording --------------------------------------------------------------------

    def rule(self) -> str:
        """What a valid value looks like, in words: ``an integer >= 1 or null``."""
        if self.wording is not None:
            return self.wording
        if self.choices is not None:
            text = "one of " + ", ".join(f'"{c}"' for c in self.choices)
        else:
            text = self.type_text or _ARTICLE[self.kind]
            if self.unit:
                text += f" of {self.unit}"
            bounds = bounds_text(self.minimum, self.exclusive_minimum, self.maximum)
            if bounds:
                text += " " + bounds
            if self.pattern is not None:
                text += f" matching {self.pattern}"
            if self.max_length is not None:
                text += f" of at most {self.max_length} characters"
        if self.nullable:
            text += " or null"
        return text

    def error(self, value: Any, label: str | None = None) -> FieldError:
        """The error for ``value`` breaking this rule."""
        name = label or self.name
        return FieldError(name, f"{name} must be {self.rule()}, got {show(value)}")

    # -- checking -------------------------------------------------------------------

    def check(self, value: Any, label: str | None = None) -> Any:
        """Return ``value`` (ints stay ints, numbers become float) or raise FieldError."""
        if value is None:
            if self.nullable:
                return None
            raise self.error(value, label)
        if self.checker is not None:
            return self._engine_check(value, label)
        kind = self.kind
        if kind == "integer":
            return self._check_integer(value, label)
        if kind == "number":
            return self._check_number(value, label)
        if kind == "string":
            return self._check_string(value, label)
        # booleans, arrays; anything else is an object
        if not isinstance(value, _PLAIN_TYPES.get(kind, dict)):
            raise self.error(value, label)
        return value

    def _check_integer(self, value: Any, label: str | None) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(value, label)
        self._check_bounds(value, label)
        return value

    def _check_number(self, value: Any, label: str | None) -> float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self.error(value, label)
        try:
            number = float(value)
        except OverflowError:  # an int past float's range: no bound could accept it
            raise self.error(value, label) from None
        if not math.isfinite(number):
            raise self.error(value, label)
        self._check_bounds(number, label)
        return number

    def _check_string(self, value: Any, label: str | None) -> str:
        if not isinstance(value, str):
            raise self.error(value, label)
        if self.choices is not None and value not in self.choices:
            raise self.error(value, label)
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise self.error(value, label)
        if self.max_length is not None and len(value) > self.max_length:
            raise self.error(value, label)
        return value

    def _engine_check(self, value: Any, label: str | None) -> Any:
        try:
            return self.checker(value) if self.checker is not None else value
        except (TypeError, ValueError) as exc:
            message = str(exc)
            name = label or self.name
            # The engine's messages start with the setting's name; put the key's place
            # (``pools[1].``) in front of it.
            if label and message.startswith(self.name):
                message = label + message[len(self.name) :]
            raise FieldError(name, message) from None

    def _check_bounds(self, value: float, label: str | None) -> None:
        if self.minimum is not None and value < self.minimum:
            raise self.error(value, label)
        if self.exclusive_minimum is not None and value <= self.exclusive_minimum:
            raise self.error(value, label)
        if self.maximum is not None and value > self.maximum:
            raise self.error(value, label)

    def parse_query(self, raw: str) -> Any:
        """Check a query-string value, converting integers and booleans from text."""
        if self.kind == "integer":
            if not re.fullmatch(r"[0-9]{1,18}", raw):
                raise self.error(raw)
            return self.check(int(raw))
        if self.kind == "boolean":
            lowered = raw.lower()
            if lowered in ("true", "1"):
                return True
            if lowered in ("false", "0"):
                return False
            raise self.error(raw)
        return self.check(raw)

    # -- schema ---------------------------------------------------------------------

    def json_schema(self) -> dict[str, Any]:
        """This rule as an OpenAPI 3.0 schema object."""
        schema: dict[str, Any] = {"type": self.kind, "description": self.description}
        if self.nullable:
            schema["nullable"] = True
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.exclusive_minimum is not None:
            schema["minimum"] = self.exclusive_minimum
            schema["exclusiveMinimum"] = True
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        if self.choices is not None:
            schema["enum"] = list(self.choices)
        if self.pattern is not None:
            schema["pattern"] = self.pattern
        if self.max_length is not None:
            schema["maxLength"] = self.max_length
        if self.default is not None:
            schema["default"] = self.default
        return schema


def check_object(
    data: Any,
    fields: Mapping[str, Field],
    *,
    label: str = "",
    what: str = "the request body",
    noun: str = "field",
    container: str = "an object",
) -> dict[str, Any]:
    """Check a mapping against ``fields``: unknown keys, missing keys, then each value.

    ``label`` prefixes key names in messages (``pools[1].``). Returns only the keys
    present in ``data``, with checked values.
    """
    if not isinstance(data, dict):
        raise FieldError(
            label.rstrip(".") or "body", f"{what} must be {container}, got {show(data)}"
        )
    unknown = [key for key in data if key not in fields]
    if unknown:
        key = unknown[0]
        allowed = ", ".join(fields)
        names = ", ".join(f"{label}{k}" for k in unknown)
        raise FieldError(
            f"{label}{key}",
            f"unknown {noun}{'s' if len(unknown) > 1 else ''} {names}"
            f"{did_you_mean(str(key), fields)} (allowed: {allowed})",
        )
    missing = [f.name for f in fields.values() if f.required and f.name not in data]
    if missing:
        field = fields[missing[0]]
        raise FieldError(
            f"{label}{field.name}",
            f"{label}{field.name} is required: it must be {field.rule()}",
        )
    return {key: fields[key].check(value, f"{label}{key}") for key, value in data.items()}
