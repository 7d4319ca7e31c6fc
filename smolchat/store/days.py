"""Conversations grouped by the day they were last used, as a chat app's sidebar shows them."""

from __future__ import annotations

import datetime as dt


def day_group(timestamp: float, now: float) -> str:
    """The heading a conversation last used at ``timestamp`` goes under, in local time:
    Today, Yesterday, Previous 7 days, Previous 30 days, then its month ("October 2026")."""
    day = dt.datetime.fromtimestamp(timestamp).date()
    today = dt.datetime.fromtimestamp(now).date()
    age = (today - day).days
    if age <= 0:  # a clock set back shows the newest as today, not in the future
        return "Today"
    if age == 1:
        return "Yesterday"
    if age < 7:
        return "Previous 7 days"
    if age < 30:
        return "Previous 30 days"
    return f"{day:%B %Y}"
