from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    # The database cache (settings.CACHES) holds the sign-in throttle counters.
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("annotate", "0003_job_outbox")]

    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
