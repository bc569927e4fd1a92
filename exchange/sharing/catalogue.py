"""The sharing catalogue (政务信息资源目录): owner, sharing class and terms per record type.

Built once from the settings' ``[record_types]``; answers who may serve a record type
and how a caller may read it. A record type with no owner is uncatalogued: it is shared
unconditionally and only the operator's configuration may serve it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from domain.errors import NotFound
from domain.subjects import KeyKind
from exchange.settings import RecordTypeSettings


class SharingClass(enum.Enum):
    UNCONDITIONAL = "UNCONDITIONAL"  # 无条件共享
    CONDITIONAL = "CONDITIONAL"  # 有条件共享
    NOT_SHARED = "NOT_SHARED"  # 不予共享


@dataclass(frozen=True)
class CatalogueEntry:
    """One record type's catalogue entry."""

    record_type: str
    catalogue_id: str
    description: str
    owner_uscc: str
    owner_department: str
    sharing: SharingClass
    fields: Mapping[str, str]
    field_sharing: Mapping[str, SharingClass]
    key_kinds: tuple[KeyKind, ...]
    update_frequency: str
    legal_basis: str
    providers: tuple[str, ...]

    def field_class(self, name: str) -> SharingClass:
        return self.field_sharing.get(name, self.sharing)

    @property
    def conditional_fields(self) -> frozenset[str]:
        return frozenset(n for n, c in self.field_sharing.items() if c is SharingClass.CONDITIONAL)

    @property
    def unshared_fields(self) -> frozenset[str]:
        return frozenset(n for n, c in self.field_sharing.items() if c is SharingClass.NOT_SHARED)

    @property
    def needs_application(self) -> bool:
        """Whether any of it is read only under a grant."""
        return self.sharing is SharingClass.CONDITIONAL or bool(self.conditional_fields)

    def may_be_served_by(self, department_uscc: str) -> bool:
        return bool(self.owner_uscc) and department_uscc in (self.owner_uscc, *self.providers)

    @property
    def reference(self) -> str:
        """How messages name the entry: ``catalogue entry <id>, owner <department>``."""
        owner = f", owner {self.owner_department}" if self.owner_department else ""
        return f"catalogue entry {self.catalogue_id}{owner}"

    def how_to_access(self) -> str:
        if self.sharing is SharingClass.NOT_SHARED:
            return "not shared (不予共享): the hub never returns it"
        if self.sharing is SharingClass.CONDITIONAL:
            return (
                f"conditional (有条件共享): apply to {self.owner_department} with "
                f"`tongban access apply {self.record_type}`; readable once approved"
            )
        text = "unconditional (无条件共享): readable within the hub's access policy"
        if self.conditional_fields:
            text += (
                f"; fields {', '.join(sorted(self.conditional_fields))} need an approved "
                f"application (`tongban access apply {self.record_type} --field ...`)"
            )
        return text

    def apply_hint(self) -> str:
        """The DENIED detail a caller without a grant is given."""
        return (
            f"apply for access to {self.record_type} ({self.reference}): "
            f"tongban access apply {self.record_type}"
        )

    def not_shared_hint(self) -> str:
        return f"{self.record_type} is not shared (不予共享, {self.reference})"


def _entry(name: str, declared: RecordTypeSettings) -> CatalogueEntry:
    return CatalogueEntry(
        record_type=name,
        catalogue_id=declared.catalogue_id or name,
        description=declared.description,
        owner_uscc=declared.owner_uscc,
        owner_department=declared.owner_department,
        sharing=SharingClass(declared.sharing),
        fields=dict(declared.fields),
        field_sharing={k: SharingClass(v) for k, v in declared.field_sharing.items()},
        key_kinds=tuple(declared.key_kinds),
        update_frequency=declared.update_frequency,
        legal_basis=declared.legal_basis,
        providers=tuple(declared.providers),
    )


class SharingCatalogue:
    """Every record type's entry, in declaration order."""

    def __init__(self, record_types: Mapping[str, RecordTypeSettings]) -> None:
        self.entries = {name: _entry(name, declared) for name, declared in record_types.items()}
        self._by_code = {e.catalogue_id: e for e in self.entries.values()}

    def get(self, name: str) -> CatalogueEntry:
        """The entry of a record type or catalogue code. Raises `NotFound`."""
        entry = self.entries.get(name) or self._by_code.get(name)
        if entry is None:
            raise NotFound(f"no catalogue entry {name[:80]!r}")
        return entry

    def serving_problem(self, department_uscc: str, record_type: str) -> str | None:
        """Why a department's adapter may not serve `record_type`, or None when it may."""
        entry = self.entries.get(record_type)
        if entry is None:
            return f"record type {record_type!r} is not declared by this hub"
        if not entry.owner_uscc:
            return (
                f"{record_type} has no owner in the catalogue: only the hub's configuration "
                "may declare adapters for it"
            )
        if entry.may_be_served_by(department_uscc):
            return None
        who = department_uscc or "a department without a USCC"
        return (
            f"{who} may not serve {record_type}: {entry.owner_department} "
            f"({entry.owner_uscc}) owns it and has not named {who} a provider"
        )
