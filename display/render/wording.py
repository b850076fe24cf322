"""The sign's wording: every string an e-ink sign shows, in Chinese, English or both.

One table, so a translation is changed in one place; :func:`text` picks and fills an entry.
"""

from __future__ import annotations

from display.headline import PHRASES

# key: (zh, en, zh+en). "{t}" is a time, "{n}" a count.
TEXTS: dict[str, tuple[str, str, str]] = {
    "free": ("空闲", "Free", "空闲|Free"),
    "soon": ("即将开始", "Starting soon", "即将开始|Starting soon"),
    "busy": ("使用中", "In use", "使用中|In use"),
    "ending": ("即将结束", "Ending soon", "即将结束|Ending soon"),
    "until": PHRASES["until"],  # the person's "until" is display.headline's business
    "from": ("{t} 开始", "from {t}", "{t} 开始 / from {t}"),
    "next": ("下一场", "Next", "下一场 Next"),
    "as_of": ("更新于 {t}", "as of {t}", "更新于 / as of {t}"),
    "none": ("今日无更多预订", "No more bookings today", "今日无更多预订 · No more bookings today"),
    "more": ("另有 {n} 场", "+{n} more", "另有 {n} 场 / +{n} more"),
    "free_until": ("空闲至 {t}", "free until {t}", "空闲至 / free until {t}"),
    "closed": ("已关闭", "Closed", "已关闭|Closed"),
    "closed_until": ("至 {zh}", "until {en}", "至 {zh} / until {en}"),
    # Weekdays, Monday first, for times beyond today ("closed until Mon 08:00").
    "weekdays": ("周一 周二 周三 周四 周五 周六 周日", "Mon Tue Wed Thu Fri Sat Sun",
                 "周一 周二 周三 周四 周五 周六 周日"),
}
LANGUAGES = ("zh", "en", "zh+en")  # in the order of each TEXTS row
_LANG_INDEX = {language: i for i, language in enumerate(LANGUAGES)}


def text(key: str, language: str, **values: object) -> str:
    """The sign's wording for ``key`` in ``language`` (``zh``, ``en`` or ``zh+en``).

    State words in ``zh+en`` come back as ``"中文|English"``: the renderer draws the English part
    smaller after the Chinese one.
    """
    return TEXTS[key][_LANG_INDEX.get(language, 1)].format(**values)
