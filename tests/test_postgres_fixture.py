import psycopg


def test_the_test_server_is_real_and_databases_are_isolated(pg_url, postgres_server):
    with psycopg.connect(pg_url) as conn:
        version = conn.execute("show server_version").fetchone()[0]
        conn.execute("create table t (x int)")
        conn.execute("insert into t values (1), (2)")
        assert conn.execute("select sum(x) from t").fetchone()[0] == 3
    assert int(version.split(".")[0]) >= 13
    other = postgres_server.create_database()
    with psycopg.connect(other) as conn:
        assert (
            conn.execute("select count(*) from pg_tables where tablename = 't'").fetchone()[0] == 0
        )
