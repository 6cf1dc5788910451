"""Labels gain optional WordNet context: synonyms and the parent synset (issue 15)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("annotate", "0012_unchanged_check")]

    operations = [
        migrations.AddField(
            model_name="label",
            name="synonyms",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name="label",
            name="parent_wnid",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AddField(
            model_name="label",
            name="parent_name",
            field=models.CharField(blank=True, max_length=200),
        ),
    ]
