"""Holder queries in the national e-certificate sharing interface's terms.

The national and provincial sharing interfaces (全国一体化政务服务平台电子证照共享
服务) name a holder by *holder code* (持证主体代码) and *holder type code*
(持证主体代码类型代码) and require a *use cause* (用证事由). Person holder types are
the GA/T 517 常用证件代码 (111 居民身份证 …); organization holder types are 001
统一社会信用代码, 002 组织机构代码, 003 工商注册号, 099 其他. Tongban keys
certificates by its own subject keys, so each code maps to one `KeyKind`, or to none
(a code of the table that no Tongban key kind stands for: asked for, it is refused by
name instead of being mistaken for another).

`NATIONAL_FIELD_ALIASES` is the table the HTTP API accepts beside its own (proto JSON)
names, so a hall platform written against the national interface sends its fields
unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from domain.errors import InvalidKey, InvalidRequest
from domain.subjects import KeyKind, SubjectKey, parse_key


@dataclass(frozen=True, slots=True)
class HolderType:
    """One row of the holder type code table."""

    code: str
    name: str
    name_en: str
    key_kind: KeyKind | None


_TABLE = (
    # Natural persons: GA/T 517 常用证件代码.
    HolderType("111", "居民身份证", "resident identity card", KeyKind.ID_CARD),
    HolderType("112", "临时居民身份证", "temporary resident identity card", KeyKind.ID_CARD),
    HolderType("113", "户口簿", "household register", None),
    HolderType("114", "中国人民解放军军官证", "PLA officer card", None),
    HolderType("115", "中国人民武装警察部队警官证", "PAP officer card", None),
    HolderType("335", "机动车驾驶证", "driving licence", None),
    HolderType("414", "普通护照", "passport", None),
    HolderType("511", "台湾居民来往大陆通行证", "Taiwan compatriot permit", None),
    HolderType("516", "港澳居民来往内地通行证", "Home-return permit (HK/Macao)", None),
    # The 2023 foreign permanent-residence ID card has 18 characters with the GB 11643
    # check (it starts with 9): a Tongban ID_CARD key.
    HolderType(
        "553", "外国人永久居留身份证", "foreign permanent resident ID card", KeyKind.ID_CARD
    ),
    HolderType("554", "外国人居留证", "foreigner residence permit", None),
    HolderType("990", "其他证件（个人）", "other personal document", None),
    # Legal persons and other organizations.
    HolderType("001", "统一社会信用代码", "unified social credit code", KeyKind.USCC),
    HolderType("002", "组织机构代码", "organization code", KeyKind.ORG_CODE),
    HolderType("003", "工商注册号", "business registration number", None),
    HolderType("099", "其他（法人和其他组织）", "other organization code", None),
)
HOLDER_TYPES: Mapping[str, HolderType] = {row.code: row for row in _TABLE}

# National interface field name -> Tongban's proto field name. The proto3 JSON names of
# QueryByHolderRequest are the national ones already (holderCode, holderTypeCode,
# useCause, certificateTypeCode); the others differ and are accepted as aliases.
NATIONAL_FIELD_ALIASES: Mapping[str, str] = {
    "holderCode": "holder_code",  # 持证主体代码
    "holderTypeCode": "holder_type_code",  # 持证主体代码类型代码
    "useCause": "use_cause",  # 用证事由
    "certificateTypeCode": "certificate_type_code",  # 证照类型代码
    "certificateIdentifier": "certificate_id",  # 证照标识
}


def with_national_names(body: Mapping[str, object]) -> dict[str, object]:
    """`body` with national field names renamed to Tongban's.

    Raises:
        InvalidRequest: a field is given under both names (the national one is named).
    """
    renamed: dict[str, object] = {}
    for name, value in body.items():
        target = NATIONAL_FIELD_ALIASES.get(name, name)
        if target in renamed:
            raise InvalidRequest(name, f"is given twice (also as {target})")
        renamed[target] = value
    return renamed


def holder_from_national(holder_code: str, holder_type_code: str) -> SubjectKey:
    """The subject key a national holder code and holder type code name.

    Raises:
        InvalidRequest: (``holder_type_code``, rule) for a code not in the table or one
            no Tongban key kind stands for; (``holder_code``, rule) for an empty code;
            `InvalidKey` (``holder_code``) when the code breaks its standard.
    """
    code = holder_type_code.strip()
    if not code:
        raise InvalidRequest("holder_type_code", "is required (111 ID card, 001 USCC, ...)")
    row = HOLDER_TYPES.get(code)
    if row is None:
        known = ", ".join(f"{r.code} {r.name_en}" for r in _TABLE if r.key_kind is not None)
        raise InvalidRequest("holder_type_code", f"{code!r} is not in the table; use {known}")
    if row.key_kind is None:
        raise InvalidRequest(
            "holder_type_code",
            f"{code} ({row.name} / {row.name_en}) is in the national table, but this hub "
            "keys no certificates by it",
        )
    if not holder_code.strip():
        raise InvalidRequest("holder_code", "is required")
    try:
        return parse_key(row.key_kind, holder_code)
    except InvalidKey as exc:
        raise InvalidKey(exc.kind, exc.key_rule, field="holder_code") from None
