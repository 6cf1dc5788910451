"""Users' look-alike key (annotate.usernames), unique. Existing accounts get theirs; one whose
key an older account already has keeps a null key (it stays usable), and no new name can take
either's place."""

from django.db import migrations, models


def fill_keys(apps, schema_editor):
    from annotate.usernames import username_key

    User = apps.get_model("annotate", "User")
    taken: set[str] = set()
    for user in User.objects.order_by("pk").only("pk", "username").iterator():
        key = username_key(user.username)
        if key in taken:
            continue
        taken.add(key)
        User.objects.filter(pk=user.pk).update(username_key=key)


class Migration(migrations.Migration):
    dependencies = [
        ("annotate", "0017_export_privacy"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="username_key",
            field=models.CharField(editable=False, max_length=600, null=True, unique=True),
        ),
        migrations.RunPython(fill_keys, migrations.RunPython.noop),
    ]
