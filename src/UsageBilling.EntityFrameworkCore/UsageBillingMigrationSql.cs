namespace UsageBilling.EntityFrameworkCore;

/// <summary>
/// SQL that UsageBilling's schema changes need beyond what EF Core generates. Migrations call
/// <see cref="UsageBillingMigrationBuilderExtensions.BackfillUsageRollups"/>, which picks the provider's
/// statements; these are public for tools that load data outside migrations.
/// </summary>
public static class UsageBillingMigrationSql
{
    /// <summary>PostgreSQL: fills <c>usage_hourly</c> from the events already stored (run once, right after the table is created); an event counts as acknowledged when its report is <c>sent</c>.</summary>
    public const string BackfillUsageHourlyPostgres = """
        INSERT INTO usage_hourly (user_id, hour, meter, quantity, event_count, reported_quantity, reported_count, last_reported_at)
        SELECT e.user_id, date_bin('1 hour', e.occurred_at, TIMESTAMPTZ '1970-01-01 00:00:00+00'), e.meter,
               SUM(e.quantity), COUNT(*),
               COALESCE(SUM(e.quantity) FILTER (WHERE r.sent_at IS NOT NULL), 0), COUNT(*) FILTER (WHERE r.sent_at IS NOT NULL),
               MAX(r.sent_at)
        FROM usage_events e
        LEFT JOIN usage_reports r ON r.id = e.report_id AND r.status = 'sent'
        GROUP BY 1, 2, 3;
        """;

    /// <summary>SQLite: fills <c>usage_hourly</c> from the events already stored (run once, right after the table is created); an event counts as acknowledged when its report is <c>sent</c>.</summary>
    public const string BackfillUsageHourlySqlite = """
        INSERT INTO usage_hourly (user_id, hour, meter, quantity, event_count, reported_quantity, reported_count, last_reported_at)
        SELECT e.user_id, (e.occurred_at / 3600000000) * 3600000000, e.meter,
               SUM(e.quantity), COUNT(*),
               SUM(CASE WHEN r.sent_at IS NOT NULL THEN e.quantity ELSE 0 END), SUM(r.sent_at IS NOT NULL),
               MAX(r.sent_at)
        FROM usage_events e
        LEFT JOIN usage_reports r ON r.id = e.report_id AND r.status = 'sent'
        GROUP BY 1, 2, 3;
        """;

    /// <summary>PostgreSQL: the folded days' hourly rows (stray ones included) rebuilt from their events, and the folded rows a void left empty deleted (as a void did before the fold), for the fold's <c>Down</c>.</summary>
    public const string UnfoldUsageHoursPostgres = """
        DELETE FROM usage_hourly h USING usage_daily d
        WHERE d.hours_folded AND d.user_id = h.user_id AND d.meter = h.meter AND h.hour >= d.day AND h.hour < d.day + interval '24 hours';
        INSERT INTO usage_hourly (user_id, hour, meter, quantity, event_count, reported_quantity, reported_count, last_reported_at)
        SELECT e.user_id, date_bin('1 hour', e.occurred_at, TIMESTAMPTZ '1970-01-01 00:00:00+00'), e.meter,
               SUM(e.quantity), COUNT(*),
               COALESCE(SUM(e.quantity) FILTER (WHERE r.sent_at IS NOT NULL), 0), COUNT(*) FILTER (WHERE r.sent_at IS NOT NULL),
               MAX(r.sent_at)
        FROM usage_events e
        JOIN usage_daily d ON d.user_id = e.user_id AND d.meter = e.meter AND d.day = date_trunc('day', e.occurred_at, 'UTC') AND d.hours_folded
        LEFT JOIN usage_reports r ON r.id = e.report_id AND r.status = 'sent'
        GROUP BY 1, 2, 3;
        DELETE FROM usage_daily WHERE hours_folded AND event_count = 0;
        """;

    /// <summary>SQLite: the folded days' hourly rows (stray ones included) rebuilt from their events, and the folded rows a void left empty deleted (as a void did before the fold), for the fold's <c>Down</c>.</summary>
    public const string UnfoldUsageHoursSqlite = """
        DELETE FROM usage_hourly
        WHERE EXISTS (SELECT 1 FROM usage_daily d WHERE d.hours_folded AND d.user_id = usage_hourly.user_id AND d.meter = usage_hourly.meter
                        AND d.day = usage_hourly.hour - usage_hourly.hour % 86400000000);
        INSERT INTO usage_hourly (user_id, hour, meter, quantity, event_count, reported_quantity, reported_count, last_reported_at)
        SELECT e.user_id, (e.occurred_at / 3600000000) * 3600000000, e.meter,
               SUM(e.quantity), COUNT(*),
               SUM(CASE WHEN r.sent_at IS NOT NULL THEN e.quantity ELSE 0 END), SUM(r.sent_at IS NOT NULL),
               MAX(r.sent_at)
        FROM usage_events e
        JOIN usage_daily d ON d.user_id = e.user_id AND d.meter = e.meter AND d.day = e.occurred_at - e.occurred_at % 86400000000 AND d.hours_folded
        LEFT JOIN usage_reports r ON r.id = e.report_id AND r.status = 'sent'
        GROUP BY 1, 2, 3;
        DELETE FROM usage_daily WHERE hours_folded AND event_count = 0;
        """;

    /// <summary>PostgreSQL: fills <c>usage_daily</c> from the events already stored (run once, right after the table is created); an event counts as acknowledged when its report is <c>sent</c>.</summary>
    public const string BackfillUsageDailyPostgres = """
        INSERT INTO usage_daily (user_id, day, meter, quantity, event_count, reported_quantity, reported_count, last_reported_at)
        SELECT e.user_id, date_bin('1 day', e.occurred_at, TIMESTAMPTZ '1970-01-01 00:00:00+00'), e.meter,
               SUM(e.quantity), COUNT(*),
               COALESCE(SUM(e.quantity) FILTER (WHERE r.sent_at IS NOT NULL), 0), COUNT(*) FILTER (WHERE r.sent_at IS NOT NULL),
               MAX(r.sent_at)
        FROM usage_events e
        LEFT JOIN usage_reports r ON r.id = e.report_id AND r.status = 'sent'
        GROUP BY 1, 2, 3;
        """;

    /// <summary>SQLite: fills <c>usage_daily</c> from the events already stored (run once, right after the table is created); an event counts as acknowledged when its report is <c>sent</c>.</summary>
    public const string BackfillUsageDailySqlite = """
        INSERT INTO usage_daily (user_id, day, meter, quantity, event_count, reported_quantity, reported_count, last_reported_at)
        SELECT e.user_id, (e.occurred_at / 86400000000) * 86400000000, e.meter,
               SUM(e.quantity), COUNT(*),
               SUM(CASE WHEN r.sent_at IS NOT NULL THEN e.quantity ELSE 0 END), SUM(r.sent_at IS NOT NULL),
               MAX(r.sent_at)
        FROM usage_events e
        LEFT JOIN usage_reports r ON r.id = e.report_id AND r.status = 'sent'
        GROUP BY 1, 2, 3;
        """;

    /// <summary>
    /// PostgreSQL: before <c>usage_events.reported_at</c> is dropped (acknowledgement moved to the event's report), brings the
    /// rollups' acknowledged columns in line with the rule that replaces it — an event is acknowledged when its report is
    /// <c>sent</c>. Only events caught between a canceled report and its resend differ (stamped, in a pending report).
    /// </summary>
    public const string AcknowledgeByReportPostgres = """
        CREATE TEMPORARY TABLE ub_ack_fix ON COMMIT DROP AS
        SELECT e.user_id, e.occurred_at, e.meter,
               CASE WHEN r.status = 'sent' THEN e.quantity ELSE -e.quantity END AS q,
               CASE WHEN r.status = 'sent' THEN 1 ELSE -1 END AS n
        FROM usage_events e
        LEFT JOIN usage_reports r ON r.id = e.report_id
        WHERE (e.reported_at IS NULL AND r.status = 'sent') OR (e.reported_at IS NOT NULL AND r.status IS DISTINCT FROM 'sent');
        UPDATE usage_hourly h SET reported_quantity = h.reported_quantity + x.q, reported_count = h.reported_count + x.n,
            last_reported_at = CASE WHEN h.reported_count + x.n = 0 THEN NULL ELSE COALESCE((
                SELECT MAX(r.sent_at) FROM usage_events e JOIN usage_reports r ON r.id = e.report_id AND r.status = 'sent'
                WHERE e.user_id = h.user_id AND e.meter = h.meter AND e.occurred_at >= h.hour AND e.occurred_at < h.hour + interval '1 hour'), h.last_reported_at) END
        FROM (SELECT user_id, date_bin('1 hour', occurred_at, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS hour, meter, SUM(q) AS q, SUM(n) AS n FROM ub_ack_fix GROUP BY 1, 2, 3) x
        WHERE h.user_id = x.user_id AND h.hour = x.hour AND h.meter = x.meter;
        UPDATE usage_daily d SET reported_quantity = d.reported_quantity + x.q, reported_count = d.reported_count + x.n,
            last_reported_at = CASE WHEN d.reported_count + x.n = 0 THEN NULL ELSE COALESCE((
                SELECT MAX(r.sent_at) FROM usage_events e JOIN usage_reports r ON r.id = e.report_id AND r.status = 'sent'
                WHERE e.user_id = d.user_id AND e.meter = d.meter AND e.occurred_at >= d.day AND e.occurred_at < d.day + interval '24 hours'), d.last_reported_at) END
        FROM (SELECT user_id, date_bin('1 day', occurred_at, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS day, meter, SUM(q) AS q, SUM(n) AS n FROM ub_ack_fix GROUP BY 1, 2, 3) x
        WHERE d.user_id = x.user_id AND d.day = x.day AND d.meter = x.meter;
        """;

    /// <summary>SQLite: what <see cref="AcknowledgeByReportPostgres"/> does, in SQLite's dialect.</summary>
    public const string AcknowledgeByReportSqlite = """
        DROP TABLE IF EXISTS temp.ub_ack_fix;
        CREATE TEMPORARY TABLE ub_ack_fix AS
        SELECT e.user_id, e.occurred_at, e.meter,
               CASE WHEN r.status = 'sent' THEN e.quantity ELSE -e.quantity END AS q,
               CASE WHEN r.status = 'sent' THEN 1 ELSE -1 END AS n
        FROM usage_events e
        LEFT JOIN usage_reports r ON r.id = e.report_id
        WHERE (e.reported_at IS NULL AND r.status = 'sent') OR (e.reported_at IS NOT NULL AND r.status IS NOT 'sent');
        UPDATE usage_hourly SET reported_quantity = reported_quantity + x.q, reported_count = reported_count + x.n,
            last_reported_at = CASE WHEN reported_count + x.n = 0 THEN NULL ELSE COALESCE((
                SELECT MAX(r.sent_at) FROM usage_events e JOIN usage_reports r ON r.id = e.report_id AND r.status = 'sent'
                WHERE e.user_id = usage_hourly.user_id AND e.meter = usage_hourly.meter AND e.occurred_at >= usage_hourly.hour AND e.occurred_at < usage_hourly.hour + 3600000000), last_reported_at) END
        FROM (SELECT user_id, (occurred_at / 3600000000) * 3600000000 AS hour, meter, SUM(q) AS q, SUM(n) AS n FROM ub_ack_fix GROUP BY 1, 2, 3) x
        WHERE usage_hourly.user_id = x.user_id AND usage_hourly.hour = x.hour AND usage_hourly.meter = x.meter;
        UPDATE usage_daily SET reported_quantity = reported_quantity + x.q, reported_count = reported_count + x.n,
            last_reported_at = CASE WHEN reported_count + x.n = 0 THEN NULL ELSE COALESCE((
                SELECT MAX(r.sent_at) FROM usage_events e JOIN usage_reports r ON r.id = e.report_id AND r.status = 'sent'
                WHERE e.user_id = usage_daily.user_id AND e.meter = usage_daily.meter AND e.occurred_at >= usage_daily.day AND e.occurred_at < usage_daily.day + 86400000000), last_reported_at) END
        FROM (SELECT user_id, (occurred_at / 86400000000) * 86400000000 AS day, meter, SUM(q) AS q, SUM(n) AS n FROM ub_ack_fix GROUP BY 1, 2, 3) x
        WHERE usage_daily.user_id = x.user_id AND usage_daily.day = x.day AND usage_daily.meter = x.meter;
        DROP TABLE temp.ub_ack_fix;
        """;

    /// <summary>Both providers: copies the events' idempotency keys into <c>usage_event_keys</c>, which holds their uniqueness from now on.</summary>
    public const string CopyUsageEventKeys = """
        INSERT INTO usage_event_keys (user_id, idempotency_key, event_id)
        SELECT user_id, idempotency_key, id FROM usage_events WHERE idempotency_key IS NOT NULL;
        """;

    // Rebuilds usage_events as {kind} from its old self renamed to {old}: the table's columns, defaults and checks
    // (LIKE), its indexes and foreign keys as they are (read from the catalog, so an app's own indexes move too),
    // the primary key as {pk}. {partitions} runs after the new table exists and before the rows are copied.
    private const string RebuildUsageEventsTemplate = """
        DO $ub$
        DECLARE
            d record;
            m timestamptz;
            last_month timestamptz;
        BEGIN
            IF {skip} THEN
                RETURN;
            END IF;

            -- What the rebuild cannot carry over is refused by name rather than lost.
            IF (SELECT relnamespace FROM pg_class WHERE oid = 'usage_events'::regclass) <> (SELECT oid FROM pg_namespace WHERE nspname = current_schema()) THEN
                RAISE EXCEPTION 'usage_events is not in the current schema (%): run the migration with its schema first in search_path', current_schema();
            END IF;
            IF EXISTS (SELECT 1 FROM pg_constraint WHERE confrelid = 'usage_events'::regclass OR (conrelid = 'usage_events'::regclass AND contype IN ('u', 'x'))) THEN
                RAISE EXCEPTION 'usage_events has constraints the rebuild cannot carry over (foreign keys referencing it, unique or exclusion constraints): %',
                    (SELECT string_agg(conname, ', ') FROM pg_constraint WHERE confrelid = 'usage_events'::regclass OR (conrelid = 'usage_events'::regclass AND contype IN ('u', 'x')));
            END IF;
            IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'usage_events'::regclass AND NOT tgisinternal) THEN
                RAISE EXCEPTION 'usage_events has triggers the rebuild cannot carry over: %', (SELECT string_agg(tgname, ', ') FROM pg_trigger WHERE tgrelid = 'usage_events'::regclass AND NOT tgisinternal);
            END IF;

            ALTER TABLE usage_events RENAME TO {old};
            CREATE TEMP TABLE ub_definitions AS
                SELECT 'f' AS kind, c.conname::text AS name, pg_get_constraintdef(c.oid) AS def
                FROM pg_constraint c WHERE c.conrelid = '{old}'::regclass AND c.contype = 'f'
                UNION ALL
                SELECT 'i', i.relname::text, pg_get_indexdef(i.oid)
                FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                WHERE x.indrelid = '{old}'::regclass AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid);
            FOR d IN SELECT c.conname::text AS name FROM pg_constraint c WHERE c.conrelid = '{old}'::regclass AND c.contype IN ('p', 'f') LOOP
                EXECUTE format('ALTER TABLE {old} DROP CONSTRAINT %I', d.name);
            END LOOP;
            FOR d IN SELECT name FROM ub_definitions WHERE kind = 'i' LOOP
                EXECUTE format('DROP INDEX %I', d.name);
            END LOOP;

            CREATE TABLE usage_events (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS) {kind};
            {partitions}
            INSERT INTO usage_events SELECT * FROM {old};
            ALTER TABLE usage_events ADD CONSTRAINT pk_usage_events PRIMARY KEY ({pk});
            FOR d IN SELECT def FROM ub_definitions WHERE kind = 'i' LOOP
                EXECUTE regexp_replace(d.def, ' ON (ONLY )?\S*{old} ', ' ON usage_events ');
            END LOOP;
            FOR d IN SELECT name, def FROM ub_definitions WHERE kind = 'f' LOOP
                EXECUTE format('ALTER TABLE usage_events ADD CONSTRAINT %I %s', d.name, d.def);
            END LOOP;
            -- The grants other roles had on the table (its owner, who runs this, owns the new one).
            FOR d IN SELECT a.privilege_type AS privilege, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END AS grantee
                     FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
                     WHERE c.oid = '{old}'::regclass AND a.grantee <> c.relowner LOOP
                EXECUTE format('GRANT %s ON usage_events TO %s', d.privilege, d.grantee);
            END LOOP;
            DROP TABLE ub_definitions;
            DROP TABLE {old};
        END
        $ub$;
        """;

    /// <summary>
    /// PostgreSQL: rebuilds <c>usage_events</c> range-partitioned by month of <c>occurred_at</c> (UTC), with one
    /// partition per month from the oldest event's to two months ahead, a default partition for anything else, its
    /// indexes and foreign keys as they were and the primary key <c>(id, occurred_at)</c> (a partitioned table's
    /// unique keys include the partition key; ids stay unique on their own). Run after <see cref="CopyUsageEventKeys"/>
    /// and after the idempotency keys' unique index left <c>usage_events</c>. Does nothing on a partitioned table.
    /// </summary>
    public static readonly string PartitionUsageEventsPostgres = RebuildUsageEventsTemplate
        .Replace("{skip}", "EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'usage_events'::regclass)", StringComparison.Ordinal)
        .Replace("{old}", "usage_events_unpartitioned", StringComparison.Ordinal)
        .Replace("{kind}", "PARTITION BY RANGE (occurred_at)", StringComparison.Ordinal)
        .Replace("{pk}", "id, occurred_at", StringComparison.Ordinal)
        .Replace("{partitions}", """
            SELECT date_trunc('month', min(occurred_at), 'UTC') INTO m FROM usage_events_unpartitioned;
                last_month := date_trunc('month', now(), 'UTC') + interval '2 months';
                m := LEAST(COALESCE(m, last_month), date_trunc('month', now(), 'UTC'));
                WHILE m <= last_month LOOP
                    EXECUTE format('CREATE TABLE %I PARTITION OF usage_events FOR VALUES FROM (%L) TO (%L)',
                        'usage_events_y' || to_char(m AT TIME ZONE 'UTC', 'YYYY"m"MM'), m, (m AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC');
                    m := (m AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC';
                END LOOP;
                CREATE TABLE usage_events_default PARTITION OF usage_events DEFAULT;
            """, StringComparison.Ordinal);

    /// <summary>PostgreSQL: the reverse of <see cref="PartitionUsageEventsPostgres"/>: one plain table again, primary key <c>id</c>. Does nothing on a plain table.</summary>
    public static readonly string UnpartitionUsageEventsPostgres = RebuildUsageEventsTemplate
        .Replace("{skip}", "NOT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'usage_events'::regclass)", StringComparison.Ordinal)
        .Replace("{old}", "usage_events_partitioned", StringComparison.Ordinal)
        .Replace("{kind}", "", StringComparison.Ordinal)
        .Replace("{pk}", "id", StringComparison.Ordinal)
        .Replace("{partitions}", "", StringComparison.Ordinal);

    /// <summary>
    /// Both providers: copies each idempotency key's request fingerprint from its event to <c>usage_event_keys</c>
    /// (run after <c>usage_event_keys.request_fingerprint</c> is added, before <c>usage_events.request_fingerprint</c>
    /// is dropped).
    /// </summary>
    public const string MoveRequestFingerprintsToKeys = """
        UPDATE usage_event_keys AS k SET request_fingerprint = e.request_fingerprint
        FROM usage_events e
        WHERE e.id = k.event_id AND e.request_fingerprint IS NOT NULL;
        """;

    /// <summary>
    /// Both providers: the reverse of <see cref="MoveRequestFingerprintsToKeys"/> (run after
    /// <c>usage_events.request_fingerprint</c> is added again, before the keys' column is dropped).
    /// </summary>
    public const string MoveRequestFingerprintsToEvents = """
        UPDATE usage_events AS e SET request_fingerprint = k.request_fingerprint
        FROM usage_event_keys k
        WHERE k.event_id = e.id AND k.request_fingerprint IS NOT NULL;
        """;

    /// <summary>
    /// PostgreSQL: drops and creates again every empty partition of <c>usage_events</c> that has a dropped column (the
    /// months ahead, the default partition when it is empty), with the same name, bounds, owner, grants and storage
    /// options (the parent's indexes come with <c>PARTITION OF</c>). A dropped column keeps its place in the rows of a
    /// table that had it (PostgreSQL still writes its null-bitmap bit into every new row); a partition created afterwards
    /// has no such place, so rows written there are as narrow as the columns now are. Partitions that hold rows keep
    /// theirs until the retention drops them. An index created on one partition alone (not on <c>usage_events</c>) is
    /// not carried over. Does nothing on a plain table.
    /// </summary>
    public const string RecreateEmptyUsageEventPartitionsPostgres = """
        DO $ub$
        DECLARE
            p record;
            g record;
            has_rows boolean;
        BEGIN
            FOR p IN
                SELECT c.relname::text AS name, pg_get_expr(c.relpartbound, c.oid) AS bound, c.relowner::regrole::text AS owner,
                       c.relacl, array_to_string(c.reloptions, ', ') AS options
                FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = 'usage_events'::regclass
                  AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attisdropped)
                ORDER BY pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT', 1
            LOOP
                EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I)', p.name) INTO has_rows;
                IF NOT has_rows THEN
                    EXECUTE format('DROP TABLE %I', p.name);
                    EXECUTE format('CREATE TABLE %I PARTITION OF usage_events %s', p.name, p.bound);
                    IF p.options IS NOT NULL THEN
                        EXECUTE format('ALTER TABLE %I SET (%s)', p.name, p.options);
                    END IF;
                    IF p.owner <> current_user THEN
                        EXECUTE format('ALTER TABLE %I OWNER TO %s', p.name, p.owner);
                    END IF;
                    FOR g IN SELECT a.privilege_type, a.grantee::regrole::text AS grantee, a.is_grantable
                             FROM aclexplode(p.relacl) a WHERE a.grantee <> 0 AND a.grantee <> (SELECT relowner FROM pg_class WHERE relname = p.name AND relnamespace = current_schema()::regnamespace) LOOP
                        EXECUTE format('GRANT %s ON %I TO %s%s', g.privilege_type, p.name, g.grantee, CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
                    END LOOP;
                    FOR g IN SELECT a.privilege_type FROM aclexplode(p.relacl) a WHERE a.grantee = 0 LOOP
                        EXECUTE format('GRANT %s ON %I TO PUBLIC', g.privilege_type, p.name);
                    END LOOP;
                END IF;
            END LOOP;
        END
        $ub$;
        """;
}
