"""Simulated department systems for the demo: in-process `python` plug-ins.

They answer for any valid key with synthetic but consistent data derived from the key
itself (the same key always yields the same record), so the demo needs no data files.
One key in ten is unknown to the source, as in real registries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import date

from adapters.base import Adapter
from domain.records import Purpose, SourceRecord
from domain.subjects import KeyKind, SubjectKey

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = (
    "伟",
    "芳",
    "娜",
    "秀英",
    "敏",
    "静",
    "丽",
    "强",
    "磊",
    "军",
    "洋",
    "勇",
    "艳",
    "杰",
    "娟",
)
_PROVINCES = {
    "11": "北京市", "31": "上海市", "32": "江苏省", "33": "浙江省", "35": "福建省",
    "44": "广东省", "51": "四川省", "81": "香港特别行政区", "82": "澳门特别行政区",
}  # fmt: skip
_TRADES = ("科技", "贸易", "建设工程", "餐饮管理", "物流", "文化传媒")


def _digest(key: SubjectKey) -> bytes:
    return hashlib.sha256(f"{key.kind}:{key.value}".encode()).digest()


def _pick(options: Sequence[str], seed: int) -> str:
    return options[seed % len(options)]


class PopulationRegistry(Adapter):
    """Public security's population registry: residents by ID-card number."""

    async def _fetch(
        self, subject: SubjectKey, record_types: Sequence[str], purpose: Purpose
    ) -> list[SourceRecord]:
        seed = _digest(subject)
        if subject.kind is not KeyKind.ID_CARD or seed[0] % 10 == 0:
            return []
        value = subject.value
        birth = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
        fields = {
            "name": _pick(_SURNAMES, seed[1]) + _pick(_GIVEN, seed[2]),
            "gender": "男" if int(value[16]) % 2 else "女",
            "birth_date": birth.isoformat(),
            "ethnicity": "汉族",
            "household_address": f"{_PROVINCES.get(value[:2], '')}某区某街道{seed[3] % 200 + 1}号",
            "household_division": value[:6],
        }
        return [
            SourceRecord(
                record_type="population.resident",
                source_record_id=f"R{seed.hex()[:12].upper()}",
                subject=subject,
                fields=fields,
            )
        ]


class BusinessRegistry(Adapter):
    """Market regulation's business registry: companies by USCC or organization code."""

    async def _fetch(
        self, subject: SubjectKey, record_types: Sequence[str], purpose: Purpose
    ) -> list[SourceRecord]:
        if subject.kind not in (KeyKind.USCC, KeyKind.ORG_CODE):
            return []
        org_code = subject if subject.kind is KeyKind.ORG_CODE else subject.related()[0]
        seed = _digest(org_code)
        if seed[0] % 10 == 0:
            return []
        fields = {
            "name": f"{_pick(list(_PROVINCES.values()), seed[1])[:2]}"
            f"{_pick(_SURNAMES, seed[2])}{_pick(_TRADES, seed[3])}有限公司",
            "legal_representative": _pick(_SURNAMES, seed[4]) + _pick(_GIVEN, seed[5]),
            "registered_capital_cny": (seed[6] % 100 + 1) * 100_000,
            "established": date(
                2000 + seed[7] % 24, seed[8] % 12 + 1, seed[9] % 28 + 1
            ).isoformat(),
            "status": "存续",
            "organization_code": org_code.value,
        }
        return [
            SourceRecord(
                record_type="market.business_license",
                source_record_id=f"B{seed.hex()[:12].upper()}",
                subject=subject,
                related_subjects=tuple(k for k in (org_code,) if k != subject),
                fields=fields,
            )
        ]
