"""On PostgreSQL, every statement that inserts events notifies the brokers when it commits."""

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

# One notification per statement, whatever its number of rows, and PostgreSQL folds those of
# one transaction into one: a notification only says "read the outbox".
CREATE = """
CREATE OR REPLACE FUNCTION events_event_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('events', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER events_event_notify AFTER INSERT ON events_event
FOR EACH STATEMENT EXECUTE FUNCTION events_event_notify();
"""
DROP = """
DROP TRIGGER IF EXISTS events_event_notify ON events_event;
DROP FUNCTION IF EXISTS events_event_notify();
"""


def create(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("events", "0001_outbox")]

    operations = [migrations.RunPython(create, drop)]
