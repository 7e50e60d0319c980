# Reserved for standing weekly bookings (issue 14); filled in by that work.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("scheduling", "0014_desk_dispatch")]

    operations: list[migrations.operations.base.Operation] = []
