"""Label names in other languages (issue 18): {"zh-hans": "虎斑猫"}, from the mapping file."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotate", "0020_semi_supervised_calibration"),
    ]

    operations = [
        migrations.AddField(
            model_name="label",
            name="names",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
