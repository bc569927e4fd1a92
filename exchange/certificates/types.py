"""Certificate types as the configuration declares them, and the check of a type's fields.

A type says what its certificates say: required and optional data fields, each with a
JSON type. Issuing with a missing, unknown or mistyped field is an `InvalidRequest`
naming ``fields.<name>``. Values arrive from protobuf `Struct`, where every number is
a double, so an integral double is accepted (and stored) as an integer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from domain.errors import InvalidRequest
from domain.field_types import FieldType, type_problem
from domain.subjects import KeyKind
from exchange.settings import CertificateTypeSettings, DocumentLayoutSettings
from signing import Algorithm, JSONValue

_SAFE_INTEGER = 2**53 - 1


def plain_json(value: object) -> JSONValue:
    """`value` with every integral double made an integer, recursively.

    RFC 8785 writes 3.0 as ``3``, which reads back as an integer: normalizing first
    makes what is stored equal to what a verifier reads out of the token.
    """
    if isinstance(value, float) and value.is_integer() and abs(value) <= _SAFE_INTEGER:
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(v) for v in value]
    return value  # type: ignore[return-value]  # str, int, float, bool, None


def _type_problem(kind: FieldType, value: JSONValue) -> str | None:
    """`domain.field_types.type_problem`, and a certificate's strings are never blank."""
    if kind == "string" and isinstance(value, str) and not value.strip():
        return "must not be empty"
    return type_problem(kind, value)


@dataclass(frozen=True, slots=True)
class CertificateType:
    """One declared certificate type."""

    code: str
    name: str
    holder_kind: KeyKind
    issuer_uscc: str
    issuer_department: str
    required_fields: Mapping[str, FieldType]
    optional_fields: Mapping[str, FieldType]
    validity: timedelta | None = None
    layout: DocumentLayoutSettings = field(default_factory=DocumentLayoutSettings)
    verifier_fields: tuple[str, ...] = ()
    usage_copy_validity: timedelta = timedelta(days=30)
    # Declared signing algorithms, primary first (two: dual-signed); () = the issuer's key.
    algorithms: tuple[Algorithm, ...] = ()

    @classmethod
    def from_settings(cls, code: str, declared: CertificateTypeSettings) -> CertificateType:
        """The type `code` as the configuration declares it."""
        return cls(
            code=code,
            name=declared.name,
            holder_kind=declared.holder_kind,
            issuer_uscc=declared.issuer_uscc,
            issuer_department=declared.issuer_department,
            required_fields=dict(declared.fields),
            optional_fields=dict(declared.optional_fields),
            validity=None
            if declared.validity_days is None
            else timedelta(days=declared.validity_days),
            layout=declared.document,
            verifier_fields=tuple(declared.verifier_fields),
            usage_copy_validity=timedelta(days=declared.usage_copy_validity_days),
            algorithms=tuple(Algorithm(a) for a in declared.algorithms or ()),
        )

    @property
    def dual_signed(self) -> bool:
        """True when certificates of this type carry two signatures."""
        return len(self.algorithms) > 1

    @property
    def title(self) -> str:
        """The document title: the layout's, else the type's name."""
        return self.layout.title or self.name

    def print_order(self) -> list[str]:
        """Field names in print order: the layout's order, then the rest as declared."""
        declared = [*self.required_fields, *self.optional_fields]
        named = [name for name in self.layout.field_order if name in declared]
        return named + [name for name in declared if name not in named]

    def field_label(self, name: str) -> tuple[str, str]:
        """(Chinese, English) label of field `name`; the name itself when none is set."""
        found = self.layout.labels.get(name)
        return (name, "") if found is None else (found.zh, found.en)

    @property
    def label(self) -> str:
        """``营业执照 (11100000000013338W001)``: how messages name the type."""
        return f"{self.name} ({self.code})"

    def check_fields(self, fields: Mapping[str, object]) -> dict[str, JSONValue]:
        """The fields, normalized, if they are exactly what this type declares.

        A null value counts as absent.

        Raises:
            InvalidRequest: (``fields.<name>``, rule) for the first field, in declaration
                order, that is missing or mistyped, or for a field the type does not
                declare.
        """
        given = {name: plain_json(value) for name, value in fields.items() if value is not None}
        for name in given:
            if name not in self.required_fields and name not in self.optional_fields:
                raise InvalidRequest(f"fields.{name}", f"is not a field of {self.label}")
        checked: dict[str, JSONValue] = {}
        for name, kind in (*self.required_fields.items(), *self.optional_fields.items()):
            if name not in given:
                if name in self.required_fields:
                    raise InvalidRequest(f"fields.{name}", f"is required by {self.label}")
                continue
            problem = _type_problem(kind, given[name])
            if problem is not None:
                raise InvalidRequest(f"fields.{name}", f"{problem} ({kind})")
            checked[name] = given[name]
        return checked


class CertificateTypes:
    """The declared certificate types, by code."""

    def __init__(self, declared: Mapping[str, CertificateTypeSettings]) -> None:
        self._types = {
            code: CertificateType.from_settings(code, settings)
            for code, settings in declared.items()
        }

    def get(self, code: str, field: str = "type_code") -> CertificateType:
        """The type with this code.

        Raises:
            InvalidRequest: (`field`, rule) when no such type is declared.
        """
        found = self._types.get(code)
        if found is None:
            if not code:
                raise InvalidRequest(field, "a certificate type code is required")
            raise InvalidRequest(field, f"no certificate type {code!r} is declared on this hub")
        return found

    def find(self, code: str) -> CertificateType | None:
        """The type with this code, or None."""
        return self._types.get(code)

    def issuer_algorithms(self, default: Algorithm) -> dict[str, tuple[Algorithm, ...]]:
        """Issuer USCC → the algorithms its types sign with (`default` where none is named)."""
        found: dict[str, list[Algorithm]] = {}
        for kind in self._types.values():
            wanted = found.setdefault(kind.issuer_uscc, [])
            for alg in kind.algorithms or (default,):
                if alg not in wanted:
                    wanted.append(alg)
        return {uscc: tuple(algs) for uscc, algs in found.items()}

    def issuers(self) -> dict[str, str]:
        """Issuer USCC → department, for every issuer of a declared type."""
        return {t.issuer_uscc: t.issuer_department for t in self._types.values()}

    def __iter__(self) -> Iterator[CertificateType]:
        return iter(self._types.values())

    def __len__(self) -> int:
        return len(self._types)
