import django.db.models.deletion
from django.conf import settings
from django.contrib.postgres.operations import BtreeGistExtension
from django.db import migrations, models

# Runs never overlap: those of one timesheet, and those of one person recorded while the
# per-person limit was 1. On PostgreSQL the schema makes an overlap impossible (exclusion
# constraints over half-open time ranges; an open run reaches to infinity); on SQLite, where one
# writer at a time holds the whole database, the services check it in their write transaction.
# Checked at the end of each statement rather than row by row, so that one statement may end a
# run and start the next.
OVERLAP_CONSTRAINTS = (
    (
        "segment_timesheet_runs_never_overlap",
        "EXCLUDE USING gist (timesheet_id WITH =, tstzrange(started_at, ended_at, '[)') WITH &&) "
        "DEFERRABLE INITIALLY IMMEDIATE",
    ),
    (
        "segment_exclusive_runs_never_overlap",
        "EXCLUDE USING gist (owner_id WITH =, tstzrange(started_at, ended_at, '[)') WITH &&) "
        "WHERE (exclusive) DEFERRABLE INITIALLY IMMEDIATE",
    ),
)


def add_overlap_constraints(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, definition in OVERLAP_CONSTRAINTS:
        schema_editor.execute(f"ALTER TABLE timesheets_segment ADD CONSTRAINT {name} {definition}")


def drop_overlap_constraints(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _ in OVERLAP_CONSTRAINTS:
        schema_editor.execute(f"ALTER TABLE timesheets_segment DROP CONSTRAINT {name}")


def copy_owners(apps, schema_editor):
    # Runs recorded before this migration keep exclusive = false: they are not checked across
    # a person's timesheets, only within their own.
    schema_editor.execute(
        "UPDATE timesheets_segment SET owner_id = ("
        "SELECT owner_id FROM timesheets_timesheet WHERE timesheets_timesheet.id = "
        "timesheets_segment.timesheet_id)"
    )
    if schema_editor.connection.vendor == "postgresql":
        # The foreign key's deferred checks would otherwise still be pending when the column is
        # altered next, which PostgreSQL refuses in the same transaction.
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")


class Migration(migrations.Migration):
    dependencies = [
        ("timesheets", "0002_running_since_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        BtreeGistExtension(),
        migrations.AddField(
            model_name="segment",
            name="exclusive",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="segment",
            name="owner",
            field=models.ForeignKey(
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="segments",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(copy_owners, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="segment",
            name="owner",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="segments",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddIndex(
            model_name="segment",
            index=models.Index(fields=["owner", "ended_at"], name="segment_owner_ended_idx"),
        ),
        migrations.AddIndex(
            model_name="timesheet",
            index=models.Index(
                condition=models.Q(("status", "running")),
                fields=["id"],
                name="timesheet_running_id_idx",
            ),
        ),
        migrations.RunPython(add_overlap_constraints, drop_overlap_constraints),
    ]
