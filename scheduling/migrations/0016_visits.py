# Reserved for issue 14's visits (couples and group bookings); filled in by that work.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("scheduling", "0015_series")]

    operations: list = []
