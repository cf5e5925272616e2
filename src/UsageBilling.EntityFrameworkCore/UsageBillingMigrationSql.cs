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
                WHERE e.user_id = d.user_id AND e.meter = d.meter AND e.occurred_at >= d.day AND e.occurred_at < d.day + interval '1 day'), d.last_reported_at) END
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
}
