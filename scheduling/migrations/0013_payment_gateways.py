# Reserved for payment gateways: links, webhook events, refunds (issue 15); filled in by that work.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("scheduling", "0012_operations")]

    operations: list[migrations.operations.base.Operation] = []
