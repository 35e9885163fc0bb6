"""The catalog's words in PostgreSQL: what SQLite's FTS5 table does there, with full-text search.

``photo_text`` holds one ``tsvector`` a searchable photo: its captions (weight A) and its path
from the library folder's own name down (weight B), English-stemmed so that "beaches" finds
"beach", in any case. Triggers on ``photos`` and ``captions`` keep it current whoever writes, and
a GIN index answers a query without reading every photo. Ranking is ``ts_rank`` with a caption's
words weighing twice a file name's, as BM25's weights do in SQLite.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

TEXT_TABLE = "photo_text"
_PLACE = ("substr(p.path, length(rtrim(coalesce(r.path, ''), "
          "replace(coalesce(r.path, ''), '/', ''))) + 1)")
# A path's separators become spaces: the parser would otherwise keep "a/b_c.jpg" as one token.
_WORDS = ("setweight(to_tsvector('english', coalesce((SELECT string_agg(c.text, ' ' ORDER BY c.id)"
          " FROM captions c WHERE c.photo_id = p.id), '')), 'A')"
          f" || setweight(to_tsvector('english', translate({_PLACE}, '/_.-', '    ')), 'B')")
# ts_rank's weights, in the order D, C, B, A.
_WEIGHTS = "'{0.1, 0.2, 0.5, 1.0}'"

SCHEMA = [
    f"CREATE TABLE IF NOT EXISTS {TEXT_TABLE} (photo_id INTEGER PRIMARY KEY, words TSVECTOR)",
    f"CREATE INDEX IF NOT EXISTS {TEXT_TABLE}_words ON {TEXT_TABLE} USING GIN (words)",
    # PL/pgSQL, not SQL: its statements are planned once a session, not once a call
    f"""CREATE OR REPLACE FUNCTION {TEXT_TABLE}_refresh(pid INTEGER) RETURNS void
        LANGUAGE plpgsql AS $$ BEGIN
        DELETE FROM {TEXT_TABLE} WHERE photo_id = pid;
        INSERT INTO {TEXT_TABLE} (photo_id, words) SELECT p.id, {_WORDS} FROM photos p
        LEFT JOIN roots r ON r.id = p.root_id WHERE p.id = pid AND p.status = 'ok';
        END $$""",
    f"""CREATE OR REPLACE FUNCTION {TEXT_TABLE}_of_photo() RETURNS trigger
        LANGUAGE plpgsql AS $$ BEGIN
        IF TG_OP = 'DELETE' THEN DELETE FROM {TEXT_TABLE} WHERE photo_id = OLD.id;
        ELSE PERFORM {TEXT_TABLE}_refresh(NEW.id); END IF;
        RETURN NULL; END $$""",
    f"""CREATE OR REPLACE FUNCTION {TEXT_TABLE}_of_caption() RETURNS trigger
        LANGUAGE plpgsql AS $$ BEGIN
        IF TG_OP <> 'INSERT' THEN PERFORM {TEXT_TABLE}_refresh(OLD.photo_id); END IF;
        IF TG_OP <> 'DELETE' THEN PERFORM {TEXT_TABLE}_refresh(NEW.photo_id); END IF;
        RETURN NULL; END $$""",
    # New photos: one statement for all the rows an INSERT added (a batch by COPY is thousands)
    f"""CREATE OR REPLACE FUNCTION {TEXT_TABLE}_of_new_photos() RETURNS trigger
        LANGUAGE plpgsql AS $$ BEGIN
        INSERT INTO {TEXT_TABLE} (photo_id, words) SELECT p.id, {_WORDS} FROM added p
        LEFT JOIN roots r ON r.id = p.root_id WHERE p.status = 'ok';
        RETURN NULL; END $$""",
    f"DROP TRIGGER IF EXISTS {TEXT_TABLE}_photos ON photos",
    f"CREATE TRIGGER {TEXT_TABLE}_photos AFTER DELETE OR UPDATE OF path, status, root_id "
    f"ON photos FOR EACH ROW EXECUTE FUNCTION {TEXT_TABLE}_of_photo()",
    f"DROP TRIGGER IF EXISTS {TEXT_TABLE}_new_photos ON photos",
    f"CREATE TRIGGER {TEXT_TABLE}_new_photos AFTER INSERT ON photos REFERENCING NEW TABLE AS "
    f"added FOR EACH STATEMENT EXECUTE FUNCTION {TEXT_TABLE}_of_new_photos()",
    f"DROP TRIGGER IF EXISTS {TEXT_TABLE}_captions ON captions",
    f"CREATE TRIGGER {TEXT_TABLE}_captions AFTER INSERT OR DELETE OR UPDATE ON captions "
    f"FOR EACH ROW EXECUTE FUNCTION {TEXT_TABLE}_of_caption()",
    f"DELETE FROM {TEXT_TABLE}",
    f"INSERT INTO {TEXT_TABLE} (photo_id, words) SELECT p.id, {_WORDS} FROM photos p "
    "LEFT JOIN roots r ON r.id = p.root_id WHERE p.status = 'ok'",
]


def create_text_index(s: Session) -> None:
    """The words table, its triggers, and a row for every searchable photo."""
    conn = s.connection()
    for statement in SCHEMA:
        conn.exec_driver_sql(statement)


def has_text_index(s: Session) -> bool:
    return bool(s.scalar(text(f"SELECT to_regclass('{TEXT_TABLE}') IS NOT NULL")))


def _query(clauses: list[list[str]], params: dict) -> list[str]:
    """Each clause as a tsquery expression: all its words (a phrase: its words in order)."""
    out = []
    for c in clauses:
        terms = []
        for w in c:
            name = f"w{len(params)}"
            params[name] = w
            terms.append(f"phraseto_tsquery('english', :{name})")
        out.append("(" + " && ".join(terms) + ")")
    return out


def photos_with_words(s: Session, clauses: list[list[str]], limit: int | None,
                      rare: int | None, ranked: bool) -> list[int]:
    """As Catalog.photos_with_words, in PostgreSQL."""
    params: dict = {}
    queries = _query(clauses, params)
    if rare is not None:  # one statement: how many photos hold each clause
        held = s.execute(text("SELECT " + ", ".join(
            f"(SELECT count(*) FROM {TEXT_TABLE} WHERE words @@ {q})" for q in queries)),
            params).one()
        queries = [q for q, n in zip(queries, held, strict=True) if n <= rare]
    if not queries:
        return []
    query = " || ".join(queries)
    sql = (f"SELECT photo_id FROM {TEXT_TABLE} WHERE words @@ ({query})"
           + (f" ORDER BY ts_rank({_WEIGHTS}, words, {query}) DESC, photo_id" if ranked else "")
           + (" LIMIT :n" if limit else ""))
    return list(s.scalars(text(sql), {**params, "n": limit}))
