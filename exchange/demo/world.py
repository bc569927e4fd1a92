"""The demo world: synthetic residents, companies, real estate and social insurance.

`generate_world(seed)` builds the same `World` for the same seed and sizes, in any
process, with nothing but `random.Random(seed)`: the four simulated departments and the
hub's tests each build it themselves and agree on every identifier. The data is
synthetic but shaped like the real thing and written in Chinese:

- residents with valid GB 11643-1999 ID numbers: a real county-level division code
  (`DIVISIONS`), a birth date from 1940 to 2005, a sequence whose last digit is odd for
  men and even for women, and the MOD 11-2 check character;
- companies (enterprises, individual businesses, farmers' cooperatives) with valid
  GB 32100-2015 USCCs: authority 9, category 1/2/3, the division code, an organization
  code with its GB 11714-1997 check (a legacy all-digit code for companies registered
  before the 2015 reform, an ``MA`` code after it), and the MOD 31 check; every legal
  representative is one of the residents;
- real-estate titles with GB/T 37346-2019 unit numbers built from the division code
  and certificate numbers such as ``苏(2019)南京市不动产权第0012345号`` whose province
  abbreviation and registering place match the division; owners are residents;
- social-insurance enrolments from the national vertical system, one per resident,
  whose employers are companies of the world.

Deliberate anomalies, so the demo shows how the hub copes (`World.anomalies`):

- `AnomalyKind.UNREGISTERED_RESIDENT`: one resident has no population record (moved
  out, not yet registered elsewhere) but owns property and is insured, so a lookup
  answers NOT_FOUND from public security and OK from the others;
- `AnomalyKind.MISTYPED_ID_ROW`: the social-insurance export holds a copy of a
  resident's row whose ID number has a wrong check character; the file adapter rejects
  it and it is attributed to nobody;
- `AnomalyKind.IMPOSSIBLE_DATE_ROW`: the export holds an unemployment-insurance row for
  a resident with the enrolment date 2019-02-30; it is rejected, and a lookup of that
  resident shows the rejection beside the resident's valid enrolment.

The module is pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import random
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final, TypeVar

from domain.subjects import id_card_check_char, org_code_check_char, uscc_check_char

__all__ = [
    "DEFAULT_COMPANIES",
    "DEFAULT_RESIDENTS",
    "DEFAULT_SEED",
    "DIVISIONS",
    "PENSION",
    "RESIDENT_PENSION",
    "UNEMPLOYMENT",
    "WORLD_DATE",
    "Anomaly",
    "AnomalyKind",
    "Company",
    "Division",
    "Enrolment",
    "MalformedExportRow",
    "RealEstateTitle",
    "Resident",
    "Showcase",
    "World",
    "generate_world",
    "make_id_card",
    "make_uscc",
]

DEFAULT_SEED: Final = 20240630
DEFAULT_RESIDENTS: Final = 3000
DEFAULT_COMPANIES: Final = 600
WORLD_DATE: Final = date(2024, 6, 30)
"""The day the generated registries describe; live changes made later carry real times."""

_T = TypeVar("_T")


# --- divisions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Division:
    """A county-level administrative division (GB/T 2260) and how its registries write it.

    `registry_place` is the place name real-estate certificates of the division carry:
    the city in most provinces, the district in Beijing, the district's one-character
    mark with 字 in Shanghai.
    """

    code: str
    province: str
    city: str
    county: str
    abbreviation: str
    registry_place: str
    weight: int = 1

    @property
    def full_name(self) -> str:
        """``江苏省南京市玄武区``; a municipality is named once: ``北京市朝阳区``."""
        if self.province == self.city:
            return f"{self.city}{self.county}"
        return f"{self.province}{self.city}{self.county}"

    @property
    def city_short(self) -> str:
        """The city without 市, as company names use it: ``南京``."""
        return self.city.removesuffix("市")


def _division(
    code: str, province: str, city: str, county: str, abbreviation: str, place: str = ""
) -> Division:
    # Nanjing, where the demo hall stands, is the most populous part of the world.
    weight = 3 if city == "南京市" else 1
    return Division(code, province, city, county, abbreviation, place or city, weight)


DIVISIONS: Final[tuple[Division, ...]] = (
    _division("320102", "江苏省", "南京市", "玄武区", "苏"),
    _division("320104", "江苏省", "南京市", "秦淮区", "苏"),
    _division("320105", "江苏省", "南京市", "建邺区", "苏"),
    _division("320106", "江苏省", "南京市", "鼓楼区", "苏"),
    _division("320113", "江苏省", "南京市", "栖霞区", "苏"),
    _division("320115", "江苏省", "南京市", "江宁区", "苏"),
    _division("320213", "江苏省", "无锡市", "梁溪区", "苏"),
    _division("320214", "江苏省", "无锡市", "新吴区", "苏"),
    _division("320505", "江苏省", "苏州市", "虎丘区", "苏"),
    _division("320506", "江苏省", "苏州市", "吴中区", "苏"),
    _division("320508", "江苏省", "苏州市", "姑苏区", "苏"),
    _division("440103", "广东省", "广州市", "荔湾区", "粤"),
    _division("440104", "广东省", "广州市", "越秀区", "粤"),
    _division("440106", "广东省", "广州市", "天河区", "粤"),
    _division("440303", "广东省", "深圳市", "罗湖区", "粤"),
    _division("440304", "广东省", "深圳市", "福田区", "粤"),
    _division("440305", "广东省", "深圳市", "南山区", "粤"),
    _division("440306", "广东省", "深圳市", "宝安区", "粤"),
    _division("440307", "广东省", "深圳市", "龙岗区", "粤"),
    _division("110101", "北京市", "北京市", "东城区", "京", "东城区"),
    _division("110102", "北京市", "北京市", "西城区", "京", "西城区"),
    _division("110105", "北京市", "北京市", "朝阳区", "京", "朝阳区"),
    _division("110108", "北京市", "北京市", "海淀区", "京", "海淀区"),
    _division("310101", "上海市", "上海市", "黄浦区", "沪", "黄字"),
    _division("310104", "上海市", "上海市", "徐汇区", "沪", "徐字"),
    _division("310105", "上海市", "上海市", "长宁区", "沪", "长字"),
    _division("310115", "上海市", "上海市", "浦东新区", "沪", "浦字"),
    _division("330102", "浙江省", "杭州市", "上城区", "浙"),
    _division("330106", "浙江省", "杭州市", "西湖区", "浙"),
    _division("330108", "浙江省", "杭州市", "滨江区", "浙"),
    _division("510104", "四川省", "成都市", "锦江区", "川"),
    _division("510107", "四川省", "成都市", "武侯区", "川"),
)
"""Real county-level division codes with their names, the world's places."""

_STREETS: Final[dict[str, tuple[str, ...]]] = {
    "南京市": ("中山路", "北京东路", "龙蟠路", "中山东路", "太平南路", "江东中路", "汉中路",
              "长江路", "珠江路", "应天大街", "龙眠大道", "仙林大道"),
    "无锡市": ("中山路", "人民中路", "解放北路", "清扬路", "长江路", "新华路"),
    "苏州市": ("人民路", "干将西路", "十全街", "东吴北路", "狮山路", "长江路", "金鸡湖大道"),
    "广州市": ("天河路", "体育西路", "中山五路", "北京路", "黄沙大道", "龙津西路", "珠江东路"),
    "深圳市": ("深南大道", "科技园路", "南海大道", "红荔路", "福华路", "宝安大道", "龙岗大道"),
    "北京市": ("朝阳北路", "建国路", "东三环中路", "中关村大街", "学院路", "西单北大街",
              "东四北大街", "安定门外大街"),
    "上海市": ("世纪大道", "张杨路", "南京东路", "淮海中路", "肇嘉浜路", "延安西路", "虹桥路"),
    "杭州市": ("延安路", "解放路", "文三路", "天目山路", "滨盛路", "江南大道"),
    "成都市": ("春熙路", "红星路", "人民南路", "武侯祠大街", "科华北路", "天府大道"),
}  # fmt: skip
_COMMUNITIES: Final = (
    "阳光花园", "锦绣华庭", "翠屏山庄", "滨江花园", "金色家园", "怡景苑", "枫林湾",
    "紫荆苑", "新城嘉园", "书香名邸", "和平新村", "梧桐雅苑", "春江花月", "东方名城",
)  # fmt: skip

# --- people ------------------------------------------------------------------------------

_SURNAMES: Final = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余"
    "杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史"
    "陶黎贺顾毛郝龚邵万钱严武戴莫孔向汤"
)
_COMPOUND_SURNAMES: Final = ("欧阳", "司马", "诸葛", "上官", "慕容")
_MALE_GIVEN: Final = (
    "伟强磊军洋勇杰涛明超刚平辉鹏华飞鑫波斌宇浩凯健俊帆旭宁龙林峰建国志文博晨昊然轩睿泽天成海东"
)
_FEMALE_GIVEN: Final = (
    "芳娜敏静丽艳娟霞秀英玲桂兰燕萍红梅莉婷雪琳晶慧颖倩佳欣怡雯悦思雨涵诗琪蕾薇月彤妍"
)
_ETHNICITIES: Final = (("汉族", 92), ("回族", 2), ("满族", 2), ("壮族", 1), ("蒙古族", 1),
                       ("土家族", 1), ("苗族", 1))  # fmt: skip
_EARLIEST_BIRTH: Final = date(1940, 1, 1)
_LATEST_BIRTH: Final = date(2005, 12, 31)

# --- companies ---------------------------------------------------------------------------

_BRANDS: Final = (
    "恒瑞", "金鼎", "华信", "宏达", "博远", "瑞丰", "鑫源", "中科", "天成", "汇通", "新宇",
    "嘉禾", "锦程", "正泰", "佳和", "润泽", "德邦", "盛世", "凯达", "远航", "星辰", "泰和",
    "云帆", "明德", "智汇", "康宁", "永安", "长风", "青禾", "万象", "致远", "华章", "启明",
    "海纳", "东升", "弘毅", "安泰", "同创", "绿洲", "睿思",
)  # fmt: skip
_INDUSTRIES: Final[tuple[tuple[str, str], ...]] = (
    ("科技", "技术服务、技术开发、技术咨询、技术交流、技术转让、技术推广；软件开发"),
    ("信息技术", "信息系统集成服务；信息技术咨询服务；数据处理和存储支持服务"),
    ("贸易", "日用百货销售；五金产品批发；电子产品销售；货物进出口"),
    ("建设工程", "建设工程施工；建筑劳务分包；住宅室内装饰装修"),
    ("餐饮管理", "餐饮管理；餐饮服务；食品销售"),
    ("物流", "道路货物运输（不含危险货物）；国内货物运输代理；普通货物仓储服务"),
    ("文化传媒", "组织文化艺术交流活动；广告设计、代理；会议及展览服务"),
    ("医疗器械", "第二类医疗器械销售；第一类医疗器械销售；医疗设备租赁"),
    ("环保科技", "环保咨询服务；大气污染治理；水污染治理；固体废物治理"),
    ("电子商务", "互联网销售（除销售需要许可的商品）；供应链管理服务"),
    ("教育咨询", "教育咨询服务（不含涉许可审批的教育培训活动）；组织文化艺术交流活动"),
    ("物业管理", "物业管理；停车场服务；家政服务"),
    ("新能源", "太阳能发电技术服务；新兴能源技术研发；储能技术服务"),
)
_SHOPS: Final[tuple[tuple[str, str], ...]] = (
    ("面馆", "餐饮服务；食品销售"),
    ("小吃店", "餐饮服务；食品销售"),
    ("便利店", "食品销售；日用百货销售；烟草制品零售"),
    ("水果店", "食用农产品零售；水果零售"),
    ("理发店", "理发服务；美容服务"),
    ("五金店", "五金产品零售；建筑材料销售"),
    ("茶叶店", "茶具销售；食品销售"),
    ("汽车修理部", "机动车修理和维护；汽车零配件零售"),
)
_COOPERATIVE_TRADES: Final = ("蔬菜种植", "水产养殖", "茶叶种植", "花卉苗木", "葡萄种植")
# GB 32100-2015 category codes under authority 9 (market regulation).
_CATEGORY_ENTERPRISE: Final = "1"
_CATEGORY_INDIVIDUAL: Final = "2"
_CATEGORY_COOPERATIVE: Final = "3"
_COMPANY_TYPES: Final = {
    _CATEGORY_INDIVIDUAL: "个体工商户",
    _CATEGORY_COOPERATIVE: "农民专业合作社",
}
_STATUSES: Final = (("存续", 80), ("在业", 10), ("吊销", 5), ("注销", 5))
# The three-licences-in-one reform: organization codes issued after it start with MA.
_USCC_REFORM: Final = date(2015, 10, 1)
_USCC_BODY_CHARS: Final = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_LAST_ESTABLISHED: Final = date(2024, 3, 31)

# --- real estate and social insurance ----------------------------------------------------

_USAGES: Final = (("城镇住宅用地/成套住宅", 88), ("商服用地/商业服务", 7), ("商务金融用地/办公", 5))
_RIGHT_TYPE: Final = "国有建设用地使用权/房屋所有权"
_RIGHT_NATURE: Final = "出让/市场化商品房"
_FIRST_REAL_ESTATE_YEAR: Final = 2016
PENSION: Final = "企业职工基本养老保险"
RESIDENT_PENSION: Final = "城乡居民基本养老保险"
UNEMPLOYMENT: Final = "失业保险"
_RETIREMENT_BIRTH: Final = date(1964, 6, 30)


# --- the world's objects -----------------------------------------------------------------


@dataclass(frozen=True)
class Resident:
    """A person with a household registration (户籍)."""

    id_card: str
    name: str
    gender: str
    birth_date: date
    ethnicity: str
    division: Division
    household_address: str
    population_record_id: str
    population_updated_at: datetime

    @property
    def surname(self) -> str:
        return self.name[:2] if self.name[:2] in _COMPOUND_SURNAMES else self.name[0]


@dataclass(frozen=True)
class Company:
    """A market entity in the business registry (营业执照)."""

    registry_id: int
    uscc: str
    name: str
    company_type: str
    legal_representative: Resident
    registered_capital_cny: int
    established: date
    status: str
    address: str
    business_scope: str
    division: Division
    last_modified: datetime

    @property
    def org_code(self) -> str:
        """The legacy organization code embedded in the USCC, written ``XXXXXXXX-C``."""
        return f"{self.uscc[8:16]}-{self.uscc[16]}"

    @property
    def registration_authority(self) -> str:
        return f"{self.division.full_name}市场监督管理局"


@dataclass(frozen=True)
class RealEstateTitle:
    """A registered real-estate right (不动产权证书) on one unit."""

    title_id: str
    certificate_number: str
    unit_number: str
    owner: Resident
    co_ownership: str
    location: str
    area_m2: float
    usage: str
    right_type: str
    right_nature: str
    registered_on: date
    updated_at: datetime


@dataclass(frozen=True)
class Enrolment:
    """A person's enrolment in one social-insurance scheme (national vertical system)."""

    enrolment_number: str
    insured: Resident
    insurance: str
    status: str
    since: date
    employer: Company | None
    contribution_base_cny: int | None
    changed_at: datetime


class AnomalyKind(enum.StrEnum):
    UNREGISTERED_RESIDENT = "UNREGISTERED_RESIDENT"
    MISTYPED_ID_ROW = "MISTYPED_ID_ROW"
    IMPOSSIBLE_DATE_ROW = "IMPOSSIBLE_DATE_ROW"


@dataclass(frozen=True)
class Anomaly:
    """A deliberate flaw in the world, with the resident it concerns and what it shows."""

    kind: AnomalyKind
    resident: Resident
    description: str


@dataclass(frozen=True)
class MalformedExportRow:
    """A social-insurance export row as the vertical system wrote it, wrong on purpose.

    The row is `enrolment`'s row with `column` written as `text` instead.
    """

    enrolment: Enrolment
    column: str
    text: str
    anomaly: Anomaly


@dataclass(frozen=True)
class Showcase:
    """The subjects the demo's story looks up, all with data in every department."""

    resident: Resident
    company: Company
    title: RealEstateTitle
    enrolment: Enrolment
    unregistered: Resident

    @property
    def id_card(self) -> str:
        return self.resident.id_card

    @property
    def uscc(self) -> str:
        return self.company.uscc

    @property
    def org_code(self) -> str:
        return self.company.org_code

    @property
    def certificate_number(self) -> str:
        return self.title.certificate_number


@dataclass(frozen=True)
class World:
    """Every registry's content, generated from one seed; see the module docstring."""

    seed: int
    residents: tuple[Resident, ...]
    companies: tuple[Company, ...]
    titles: tuple[RealEstateTitle, ...]
    enrolments: tuple[Enrolment, ...]
    malformed_export_rows: tuple[MalformedExportRow, ...]
    anomalies: tuple[Anomaly, ...]

    @functools.cached_property
    def unregistered_id_cards(self) -> frozenset[str]:
        """ID numbers the population registry does not hold."""
        return frozenset(
            a.resident.id_card
            for a in self.anomalies
            if a.kind is AnomalyKind.UNREGISTERED_RESIDENT
        )

    @property
    def registered_residents(self) -> tuple[Resident, ...]:
        """The residents the population registry holds."""
        missing = self.unregistered_id_cards
        return tuple(r for r in self.residents if r.id_card not in missing)

    @functools.cached_property
    def residents_by_id_card(self) -> dict[str, Resident]:
        return {r.id_card: r for r in self.residents}

    @functools.cached_property
    def companies_by_uscc(self) -> dict[str, Company]:
        return {c.uscc: c for c in self.companies}

    @functools.cached_property
    def titles_by_owner(self) -> dict[str, tuple[RealEstateTitle, ...]]:
        return _group(self.titles, lambda t: t.owner.id_card)

    @functools.cached_property
    def companies_by_representative(self) -> dict[str, tuple[Company, ...]]:
        return _group(self.companies, lambda c: c.legal_representative.id_card)

    @functools.cached_property
    def enrolments_by_insured(self) -> dict[str, tuple[Enrolment, ...]]:
        return _group(self.enrolments, lambda e: e.insured.id_card)

    def showcase(self) -> Showcase:
        """The story's subjects: the first registered resident who owns property, is the
        legal representative of exactly one operating enterprise, holds one enrolment
        (preferably as an employee) and is in no anomaly. `generate_world` makes sure
        there is one; for a world built otherwise, raises `LookupError` when none fits.
        """
        flawed = {a.resident.id_card for a in self.anomalies}
        unregistered = next(
            a.resident for a in self.anomalies if a.kind is AnomalyKind.UNREGISTERED_RESIDENT
        )
        fallback: Showcase | None = None
        for resident in self.residents:
            key = resident.id_card
            companies = self.companies_by_representative.get(key, ())
            titles = self.titles_by_owner.get(key, ())
            enrolments = self.enrolments_by_insured.get(key, ())
            if (
                key not in flawed
                and titles
                and len(companies) == 1
                and companies[0].status == "存续"
                and companies[0].company_type not in _COMPANY_TYPES.values()
                and len(enrolments) == 1
            ):
                found = Showcase(resident, companies[0], titles[0], enrolments[0], unregistered)
                # Someone who works for a company tells the better story; anyone will do.
                if enrolments[0].employer is not None:
                    return found
                fallback = fallback or found
        if fallback is not None:
            return fallback
        raise LookupError("no resident fits the showcase")


def _group(items: Sequence[_T], key: Callable[[_T], str]) -> dict[str, tuple[_T, ...]]:
    grouped: dict[str, list[_T]] = {}
    for item in items:
        grouped.setdefault(key(item), []).append(item)
    return {k: tuple(v) for k, v in grouped.items()}


# --- identifiers -------------------------------------------------------------------------


def make_id_card(division_code: str, birth_date: date, sequence: int) -> str:
    """A GB 11643-1999 identity number: division, birth date, 3-digit sequence, check.

    Raises `InvalidKey` when the parts are not 17 digits together.
    """
    body = f"{division_code}{birth_date:%Y%m%d}{sequence:03d}"
    return body + id_card_check_char(body)


def make_uscc(authority_category: str, division_code: str, org_body: str) -> str:
    """A GB 32100-2015 code: authority and category, division, organization code, check.

    `org_body` is the 8-character organization code body; its GB 11714-1997 check
    character is computed here, then the USCC's own. Raises `InvalidKey` when a part
    holds characters the codes do not allow.
    """
    body = f"{authority_category}{division_code}{org_body}{org_code_check_char(org_body)}"
    return body + uscc_check_char(body)


# --- generation --------------------------------------------------------------------------


class _Draw:
    """The world's one random source, with the draws the generators share."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def weighted(self, options: Sequence[tuple[str, int]]) -> str:
        return self.rng.choices([o for o, _ in options], [w for _, w in options])[0]

    def date_between(self, first: date, last: date) -> date:
        return first + timedelta(days=self.rng.randrange((last - first).days + 1))

    def moment_on(self, day: date) -> datetime:
        # Office hours, Beijing time (naive, as the registries store it).
        seconds = self.rng.randrange(8 * 3600, 18 * 3600)
        return datetime(day.year, day.month, day.day) + timedelta(seconds=seconds)

    def division(self) -> Division:
        return self.rng.choices(DIVISIONS, [d.weight for d in DIVISIONS])[0]

    def street_address(self, division: Division) -> str:
        street = self.rng.choice(_STREETS[division.city])
        return f"{division.full_name}{street}{self.rng.randint(1, 399)}号"

    def home_address(self, division: Division, building_word: str = "栋") -> str:
        community = self.rng.choice(_COMMUNITIES)
        building = self.rng.randint(1, 36)
        unit = self.rng.randint(1, 4)
        room = self.rng.randint(1, 32) * 100 + self.rng.randint(1, 4)
        place = self.street_address(division)
        if building_word == "栋":
            return f"{place}{community}{building}栋{unit}单元{room}室"
        return f"{place}{community}{building}幢{room}室"


def generate_world(
    seed: int = DEFAULT_SEED,
    *,
    residents: int = DEFAULT_RESIDENTS,
    companies: int = DEFAULT_COMPANIES,
) -> World:
    """The world for `seed`: the same sizes and seed always give an equal world.

    Raises `ValueError` when the sizes cannot hold the story (fewer than 300 residents,
    fewer than 30 companies, or more companies than a fifth of the residents), or, rarely
    in a small world, when no resident fits the showcase (`World.showcase`).
    """
    if residents < 300 or companies < 30 or companies * 5 > residents:
        raise ValueError(
            "need at least 300 residents, 30 companies and 5 residents per company, "
            f"got {residents} residents and {companies} companies"
        )
    draw = _Draw(seed)
    people = _residents(draw, residents)
    firms = _companies(draw, people, companies)
    titles = _titles(draw, people)
    enrolments = _enrolments(draw, people, firms)
    anomalies, malformed = _anomalies(draw, people, firms, titles, enrolments)
    world = World(seed, people, firms, titles, enrolments, malformed, anomalies)
    try:
        world.showcase()
    except LookupError:
        raise ValueError(
            f"no resident of the world of seed {seed} fits the showcase; "
            "choose another seed or a larger world"
        ) from None
    return world


def _residents(draw: _Draw, count: int) -> tuple[Resident, ...]:
    rng = draw.rng
    seen: set[str] = set()
    people: list[Resident] = []
    while len(people) < count:
        division = draw.division()
        birth = draw.date_between(_EARLIEST_BIRTH, _LATEST_BIRTH)
        male = rng.random() < 0.5
        # GB 11643-1999: the sequence's last digit is odd for men, even for women.
        sequence = rng.randrange(100) * 10 + rng.choice(
            (1, 3, 5, 7, 9) if male else (0, 2, 4, 6, 8)
        )
        id_card = make_id_card(division.code, birth, sequence)
        if id_card in seen:
            continue
        seen.add(id_card)
        surname = rng.choice(_COMPOUND_SURNAMES) if rng.random() < 0.01 else rng.choice(_SURNAMES)
        given_chars = _MALE_GIVEN if male else _FEMALE_GIVEN
        given = "".join(rng.choice(given_chars) for _ in range(rng.choice((1, 2, 2, 2))))
        registered = draw.date_between(max(birth, date(2008, 1, 1)), WORLD_DATE)
        people.append(
            Resident(
                id_card=id_card,
                name=surname + given,
                gender="男" if male else "女",
                birth_date=birth,
                ethnicity=draw.weighted(_ETHNICITIES),
                division=division,
                household_address=draw.home_address(division),
                population_record_id=f"RK{division.code}{len(people) + 1:07d}",
                population_updated_at=draw.moment_on(registered),
            )
        )
    return tuple(people)


def _adult_from(person: Resident, years: int) -> date:
    birth = person.birth_date
    # Counted from the 28th in February, so a 29 February birthday needs no leap year.
    return date(birth.year + years, birth.month, 28 if birth.month == 2 else birth.day)


def _companies(draw: _Draw, people: Sequence[Resident], count: int) -> tuple[Company, ...]:
    rng = draw.rng
    candidates = [p for p in people if _adult_from(p, 20) <= _LAST_ESTABLISHED]
    representatives = rng.sample(candidates, count)
    used_codes: set[str] = set()
    used_names: set[str] = set()
    firms: list[Company] = []
    for person in representatives:
        division = person.division if rng.random() < 0.7 else draw.division()
        category = draw.weighted(
            ((_CATEGORY_ENTERPRISE, 85), (_CATEGORY_INDIVIDUAL, 10), (_CATEGORY_COOPERATIVE, 5))
        )
        established = draw.date_between(
            max(_adult_from(person, 20), date(1995, 1, 1)), _LAST_ESTABLISHED
        )
        uscc = make_uscc(f"9{category}", division.code, _org_body(draw, established))
        while uscc in used_codes:
            uscc = make_uscc(f"9{category}", division.code, _org_body(draw, established))
        used_codes.add(uscc)
        name, company_type, scope, capital = _company_profile(draw, person, division, category)
        # Registries refuse a name already taken; the applicant then picks another.
        while name in used_names:
            name, company_type, scope, capital = _company_profile(draw, person, division, category)
        used_names.add(name)
        last_change = draw.date_between(established, WORLD_DATE)
        firms.append(
            Company(
                registry_id=len(firms) + 1,
                uscc=uscc,
                name=name,
                company_type=company_type,
                legal_representative=person,
                registered_capital_cny=capital,
                established=established,
                status=draw.weighted(_STATUSES),
                address=draw.street_address(division),
                business_scope=scope,
                division=division,
                last_modified=draw.moment_on(last_change),
            )
        )
    return tuple(firms)


def _org_body(draw: _Draw, established: date) -> str:
    rng = draw.rng
    if established < _USCC_REFORM:
        return "".join(rng.choice(string.digits) for _ in range(8))
    return "MA" + "".join(rng.choice(_USCC_BODY_CHARS) for _ in range(6))


def _company_profile(
    draw: _Draw, person: Resident, division: Division, category: str
) -> tuple[str, str, str, int]:
    """Name, type, business scope and registered capital (yuan) of a new company."""
    rng = draw.rng
    if category == _CATEGORY_INDIVIDUAL:
        shop, scope = rng.choice(_SHOPS)
        street = rng.choice(_STREETS[division.city])
        name = f"{division.city}{division.county}{street}{person.surname}记{shop}"
        return name, _COMPANY_TYPES[category], scope, rng.randint(3, 30) * 10_000
    if category == _CATEGORY_COOPERATIVE:
        trade = rng.choice(_COOPERATIVE_TRADES)
        name = f"{division.city}{division.county}{rng.choice(_BRANDS)}{trade}专业合作社"
        scope = f"组织采购、供应成员所需的生产资料；{trade}及销售"
        return name, _COMPANY_TYPES[category], scope, rng.randint(5, 100) * 10_000
    industry, scope = rng.choice(_INDUSTRIES)
    shares = rng.random() < 0.08
    suffix = "股份有限公司" if shares else "有限公司"
    company_type = (
        "股份有限公司（非上市、自然人投资或控股）"
        if shares
        else ("有限责任公司（自然人投资或控股）")
    )
    capital = rng.choice((10, 50, 100, 200, 300, 500, 1000, 2000, 5000)) * 10_000
    return (
        f"{division.city_short}{rng.choice(_BRANDS)}{industry}{suffix}",
        company_type,
        scope,
        capital,
    )


def _unique(used: set[str], make: Callable[[], str]) -> str:
    value = make()
    while value in used:
        value = make()
    used.add(value)
    return value


def _titles(draw: _Draw, people: Sequence[Resident]) -> tuple[RealEstateTitle, ...]:
    rng = draw.rng
    # Certificate numbers run per registering place and year.
    next_number: dict[tuple[str, int], int] = {}
    used_units: set[str] = set()
    titles: list[RealEstateTitle] = []
    for person in people:
        adult = _adult_from(person, 18)
        first = max(adult, date(_FIRST_REAL_ESTATE_YEAR, 1, 1))
        if first > WORLD_DATE:
            continue
        roll = rng.random()
        owned = 2 if roll < 0.08 else 1 if roll < 0.5 else 0
        for _ in range(owned):
            division = person.division if rng.random() < 0.85 else draw.division()
            registered = draw.date_between(first, WORLD_DATE)
            counter = (division.registry_place, registered.year)
            number = next_number.get(counter, rng.randint(1000, 90000)) + rng.randint(1, 40)
            next_number[counter] = number
            certificate = (
                f"{division.abbreviation}({registered.year}){division.registry_place}"
                f"不动产权第{number:07d}号"
            )
            unit = _unique(used_units, functools.partial(_unit_number, draw, division))
            titles.append(
                RealEstateTitle(
                    title_id=f"BDC{len(titles) + 1:08d}",
                    certificate_number=certificate,
                    unit_number=unit,
                    owner=person,
                    co_ownership="单独所有" if rng.random() < 0.7 else "共同共有",
                    location=draw.home_address(division, building_word="幢"),
                    area_m2=round(rng.uniform(38.0, 180.0), 2),
                    usage=draw.weighted(_USAGES),
                    right_type=_RIGHT_TYPE,
                    right_nature=_RIGHT_NATURE,
                    registered_on=registered,
                    updated_at=draw.moment_on(registered),
                )
            )
    return tuple(titles)


def _unit_number(draw: _Draw, division: Division) -> str:
    """A GB/T 37346-2019 unit number on state-owned construction land with a building."""
    rng = draw.rng
    zone = f"{rng.randint(1, 30):03d}{rng.randint(1, 20):03d}"
    parcel = f"{rng.randint(1, 2999):05d}"
    fixture = f"{rng.randint(1, 60):04d}{rng.randint(1, 400):04d}"
    # G: state-owned land; B: construction-land use right; F: a building.
    return f"{division.code}{zone}GB{parcel}F{fixture}"


def _enrolments(
    draw: _Draw, people: Sequence[Resident], firms: Sequence[Company]
) -> tuple[Enrolment, ...]:
    rng = draw.rng
    employers = [
        c
        for c in firms
        if c.company_type not in _COMPANY_TYPES.values() and c.status in ("存续", "在业")
    ]
    enrolments: list[Enrolment] = []
    for person in people:
        if rng.random() < 0.03:
            continue  # not insured anywhere
        start = max(_adult_from(person, 18), date(1998, 1, 1))
        retired = person.birth_date <= _RETIREMENT_BIRTH
        employer: Company | None = None
        base: int | None = None
        if retired:
            insurance, status = PENSION, "退休"
        elif rng.random() < 0.78:
            employer = rng.choice(employers)
            start = max(start, employer.established)
            insurance = PENSION
            status = draw.weighted((("正常参保", 88), ("暂停缴费", 9), ("终止参保", 3)))
            base = rng.randint(40, 300) * 100
        else:
            insurance, status = RESIDENT_PENSION, "正常参保"
        since = draw.date_between(start, WORLD_DATE)
        enrolments.append(
            Enrolment(
                enrolment_number=f"{person.division.code[:4]}{len(enrolments) + 1:010d}",
                insured=person,
                insurance=insurance,
                status=status,
                since=since,
                employer=employer,
                contribution_base_cny=base,
                changed_at=draw.moment_on(draw.date_between(since, WORLD_DATE)),
            )
        )
    return tuple(enrolments)


def _anomalies(
    draw: _Draw,
    people: Sequence[Resident],
    firms: Sequence[Company],
    titles: Sequence[RealEstateTitle],
    enrolments: Sequence[Enrolment],
) -> tuple[tuple[Anomaly, ...], tuple[MalformedExportRow, ...]]:
    representatives = {c.legal_representative.id_card for c in firms}
    owners = {t.owner.id_card for t in titles}
    insured = {e.insured.id_card: e for e in enrolments}
    # Picked from the end, so the showcase (the first fitting resident) stays clean.
    ordinary = [
        p for p in reversed(people) if p.id_card not in representatives and p.id_card in insured
    ]
    owning = [p for p in ordinary if p.id_card in owners]
    employed = [p for p in ordinary if p not in owning[:1] and insured[p.id_card].employer]
    if not owning or len(employed) < 2:
        raise ValueError("the world is too small for its anomalies")
    unregistered, (mistyped, impossible) = owning[0], employed[:2]
    anomalies = (
        Anomaly(
            AnomalyKind.UNREGISTERED_RESIDENT,
            unregistered,
            "户籍已迁出、尚未在迁入地落户：公安人口库查无此人，其他部门仍有记录 / "
            "moved out and not yet registered again: the population registry has no record, "
            "the other departments do",
        ),
        Anomaly(
            AnomalyKind.MISTYPED_ID_ROW,
            mistyped,
            "社保导出文件中一行的证件号码校验码录错 / an export row whose ID number has a "
            "mistyped check character: rejected, attributed to nobody",
        ),
        Anomaly(
            AnomalyKind.IMPOSSIBLE_DATE_ROW,
            impossible,
            "社保导出文件中失业保险一行的参保日期为2019-02-30 / an unemployment-insurance "
            "export row dated 2019-02-30: rejected, shown beside the resident's valid enrolment",
        ),
    )
    wrong_check = _mistyped_check(mistyped.id_card)
    copied = insured[mistyped.id_card]
    extra = Enrolment(
        enrolment_number=f"{impossible.division.code[:4]}{len(enrolments) + 2:010d}",
        insured=impossible,
        insurance=UNEMPLOYMENT,
        status="正常参保",
        since=date(2019, 2, 28),
        employer=insured[impossible.id_card].employer,
        contribution_base_cny=insured[impossible.id_card].contribution_base_cny,
        changed_at=datetime(2019, 3, 1, 9, 30),
    )
    malformed = (
        MalformedExportRow(
            dataclasses.replace(
                copied, enrolment_number=f"{mistyped.division.code[:4]}{len(enrolments) + 1:010d}"
            ),
            "证件号码",
            wrong_check,
            anomalies[1],
        ),
        MalformedExportRow(extra, "参保日期", "2019-02-30", anomalies[2]),
    )
    return anomalies, malformed


def _mistyped_check(id_card: str) -> str:
    check = id_card[17]
    wrong = "0" if check != "0" else "1"
    return id_card[:17] + wrong
