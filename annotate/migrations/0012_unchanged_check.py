"""annotate_unchanged(ok): raises a serialization failure unless `ok`. A vote's write statement
calls it to undo itself when the rows it read have changed since (annotate.services.serving).
PostgreSQL only; SQLite votes take their locks instead."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION annotate_unchanged(ok boolean) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF ok IS NOT TRUE THEN
        RAISE EXCEPTION 'the rows this statement read have changed since'
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN true;
END
$$
"""
DROP = "DROP FUNCTION IF EXISTS annotate_unchanged(boolean)"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("annotate", "0011_lean_split_assignments")]

    operations = [migrations.RunPython(create, drop)]
