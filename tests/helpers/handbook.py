"""A small staff handbook: five files on unrelated topics, for answer and TUI tests."""

from __future__ import annotations

from pathlib import Path

HANDBOOK = {
    "hr/leave.md": "# Parental leave\n\nNew parents may take up to twenty weeks away from work "
    "with full pay after the birth or adoption of a child. Tell your manager eight weeks "
    "before the leave starts.",
    "it/vpn.md": "# Remote access\n\nConnect to the office network from home with the "
    "WireGuard client; install the profile sent by the help desk. The VPN disconnects "
    "after twelve hours.",
    "finance/travel.md": "# Reimbursement\n\nSubmit receipts for taxis, trains and hotels "
    "within thirty days to be paid back. Flights need approval from finance first.",
    "facilities/parking.md": "# Car park\n\nStaff cars go on levels two and three; level one "
    "is for visitors and deliveries. Bicycles are stored in the basement.",
    "security/backups.md": "# Backups\n\nBackup tapes are rotated every quarter. The "
    "operations lead checks the rotation log and signs it. Tapes are kept offsite for seven "
    "years.",
}


def write_handbook(folder: Path, extra: dict[str, str] | None = None) -> Path:
    for rel, text in {**HANDBOOK, **(extra or {})}.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder
