"""Run history store (SQLite default, PostgreSQL URL), trends and regression alerts. Filled by the history issue."""
