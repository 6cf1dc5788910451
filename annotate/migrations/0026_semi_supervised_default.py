from django.db import migrations, models


class Migration(migrations.Migration):
    """Semi-supervised training (self-training, issue 22) on by default for new projects."""

    dependencies = [
        ("annotate", "0023_teams"),
    ]

    operations = [
        migrations.AlterField(
            model_name="project",
            name="semi_supervised",
            field=models.BooleanField(default=True),
        ),
    ]
