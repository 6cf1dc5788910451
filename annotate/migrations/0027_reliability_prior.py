from django.db import migrations, models


class Migration(migrations.Migration):
    """The volunteers' reliability prior, fitted per project by re-aggregation (issue 16)."""

    dependencies = [
        ("annotate", "0026_semi_supervised_default"),
    ]

    operations = [
        migrations.AddField(
            model_name="project",
            name="reliability_prior_accuracy",
            field=models.FloatField(default=0.7),
        ),
        migrations.AddField(
            model_name="project",
            name="reliability_prior_strength",
            field=models.FloatField(default=4.0),
        ),
    ]
