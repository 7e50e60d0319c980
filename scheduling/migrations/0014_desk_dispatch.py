# Reserved for manual dispatch and acting for staff (issue 13); filled in by that work.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("scheduling", "0013_payment_gateways")]

    operations: list[migrations.operations.base.Operation] = []
