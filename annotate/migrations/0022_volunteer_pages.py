"""Issue 18: the project's suggestion threshold and the volunteer's daily goal."""

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('annotate', '0021_label_names'),
    ]

    operations = [
        migrations.AddField(
            model_name='project',
            name='suggestion_threshold',
            field=models.FloatField(default=0.7, help_text='Suggestions below this calibrated confidence are not shown to volunteers.', validators=[django.core.validators.MinValueValidator(0.0), django.core.validators.MaxValueValidator(1.0)]),
        ),
        migrations.AddField(
            model_name='user',
            name='daily_goal',
            field=models.PositiveSmallIntegerField(blank=True, null=True, validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(10000)]),
        ),
    ]
