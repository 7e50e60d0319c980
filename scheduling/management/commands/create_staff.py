"""`manage.py create_staff`: the command-line face of `services.staff.create_staff`."""

from __future__ import annotations

import argparse

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scheduling.errors import ValidationFailed
from scheduling.models import Role, Vehicle
from scheduling.services.staff import create_staff


def id_list(text: str) -> list[int]:
    """'3,5' as [3, 5]; anything else is an argument error, reported by argparse."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or not all(part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"'{text}' is not a list of service ids such as 3,5")
    return [int(part) for part in parts]


class Command(BaseCommand):
    help = (
        "Create a staff member with their role's profile (and, for therapists and drivers, "
        "weekly working hours on every day). Prints the new user's id."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--role", required=True, choices=Role.values)
        parser.add_argument("--username", required=True)
        parser.add_argument("--password", required=True)
        parser.add_argument("--first-name", default="")
        parser.add_argument("--last-name", default="")
        parser.add_argument("--phone", default="")
        parser.add_argument(
            "--services",
            type=id_list,
            default=[],
            metavar="ID,ID",
            help="Service ids a therapist performs.",
        )
        parser.add_argument(
            "--vehicle", choices=Vehicle.values, help="A driver's vehicle (default motorcycle)."
        )
        parser.add_argument(
            "--hours",
            metavar="HH:MM-HH:MM",
            help="Daily working hours of a therapist or driver (default: the business's).",
        )

    def handle(self, *args, **options) -> None:
        try:
            user = create_staff(
                role=options["role"],
                username=options["username"],
                password=options["password"],
                first_name=options["first_name"],
                last_name=options["last_name"],
                phone=options["phone"],
                service_ids=options["services"],
                vehicle=options["vehicle"],
                hours=options["hours"],
            )
        except ValidationFailed as exc:
            raise CommandError(exc.message) from exc
        # Only the id on stdout, so scripts can capture it.
        self.stdout.write(str(user.pk))
