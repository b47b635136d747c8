"""The tests' throwaway PostgreSQL server: found, or a failure saying why."""

import os

import psycopg2
import pytest
import sqlalchemy as sa

from tests import pg_server


def _fake_server(folder, tools=('initdb', 'pg_ctl', 'postgres')):
    folder.mkdir(parents=True)
    for tool in tools:
        (folder / tool).write_text('#!/bin/sh\n')
        (folder / tool).chmod(0o755)


def test_missing_binaries_fail_saying_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(pg_server, 'BIN_GLOB', str(tmp_path / '*' / 'bin'))
    with pytest.raises(pg_server.ServerError) as err:
        pg_server.Server().start()
    assert 'postgresql package (tools/setup.sh' in str(err.value)


def test_the_newest_whole_server_is_used(monkeypatch, tmp_path):
    for version in ('9', '15', '13'):
        _fake_server(tmp_path / version / 'bin')
    _fake_server(tmp_path / '16' / 'bin', tools=('initdb', 'pg_ctl'))
    monkeypatch.setattr(pg_server, 'BIN_GLOB', str(tmp_path / '*' / 'bin'))
    assert pg_server.bindir() == str(tmp_path / '15' / 'bin')


def test_the_session_server_runs_apart_and_checks_passwords(postgresql):
    url = sa.engine.make_url(postgresql.url)
    conn = psycopg2.connect(host=url.host, port=url.port, user=url.username,
                            password=url.password, dbname=url.database)
    try:
        with conn.cursor() as cursor:
            cursor.execute('SELECT pg_backend_pid(), '
                           "current_setting('data_directory')")
            pid, data = cursor.fetchone()
        # While connected: the backend process ends with the connection.
        owner = os.stat('/proc/%d' % pid).st_uid
    finally:
        conn.close()
    assert data.startswith(postgresql.folder)
    if os.geteuid() == 0:
        # PostgreSQL refuses root: its server runs as another user.
        assert owner != 0
    with pytest.raises(psycopg2.OperationalError, match='password'):
        psycopg2.connect(host=url.host, port=url.port, user=url.username,
                         password='wrong', dbname=url.database).close()
