from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class AnnotateConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "annotate"
    verbose_name = "Image labeling"

    def ready(self):
        from rest_framework.authtoken.models import Token

        from annotate import recent
        from annotate.models import Project, User

        # What this process changes, it stops answering from memory (annotate.recent).
        for model in (Token, User, Project):
            for name, signal in (("saved", post_save), ("deleted", post_delete)):
                signal.connect(
                    recent.forget_saved_or_deleted,
                    sender=model,
                    dispatch_uid=f"recent-{model.__name__}-{name}",
                )
