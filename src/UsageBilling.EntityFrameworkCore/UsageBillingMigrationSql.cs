namespace UsageBilling.EntityFrameworkCore;

/// <summary>
/// SQL that UsageBilling's schema changes need beyond what EF Core generates. Migrations call
/// <see cref="UsageBillingMigrationBuilderExtensions.BackfillUsageRollups"/>, which picks the provider's
/// statements; these are public for tools that load data outside migrations.
/// </summary>
public static class UsageBillingMigrationSql
{
    /// <summary>PostgreSQL: fills <c>usage_hourly</c> from the events already stored (run once, right after the table is created).</summary>
    public const string BackfillUsageHourlyPostgres = """
        INSERT INTO usage_hourly (user_id, hour, meter, quantity, event_count, reported_quantity, reported_count, last_reported_at)
        SELECT user_id, date_bin('1 hour', occurred_at, TIMESTAMPTZ '1970-01-01 00:00:00+00'), meter,
               SUM(quantity), COUNT(*),
               COALESCE(SUM(quantity) FILTER (WHERE reported_at IS NOT NULL), 0), COUNT(*) FILTER (WHERE reported_at IS NOT NULL),
               MAX(reported_at)
        FROM usage_events
        GROUP BY 1, 2, 3;
        """;

    /// <summary>SQLite: fills <c>usage_hourly</c> from the events already stored (run once, right after the table is created).</summary>
    public const string BackfillUsageHourlySqlite = """
        INSERT INTO usage_hourly (user_id, hour, meter, quantity, event_count, reported_quantity, reported_count, last_reported_at)
        SELECT user_id, (occurred_at / 3600000000) * 3600000000, meter,
               SUM(quantity), COUNT(*),
               SUM(CASE WHEN reported_at IS NOT NULL THEN quantity ELSE 0 END), SUM(reported_at IS NOT NULL),
               MAX(reported_at)
        FROM usage_events
        GROUP BY 1, 2, 3;
        """;

    /// <summary>PostgreSQL: fills <c>usage_daily</c> from the events already stored (run once, right after the table is created).</summary>
    public const string BackfillUsageDailyPostgres = """
        INSERT INTO usage_daily (user_id, day, meter, quantity, event_count, reported_quantity, reported_count, last_reported_at)
        SELECT user_id, date_bin('1 day', occurred_at, TIMESTAMPTZ '1970-01-01 00:00:00+00'), meter,
               SUM(quantity), COUNT(*),
               COALESCE(SUM(quantity) FILTER (WHERE reported_at IS NOT NULL), 0), COUNT(*) FILTER (WHERE reported_at IS NOT NULL),
               MAX(reported_at)
        FROM usage_events
        GROUP BY 1, 2, 3;
        """;

    /// <summary>SQLite: fills <c>usage_daily</c> from the events already stored (run once, right after the table is created).</summary>
    public const string BackfillUsageDailySqlite = """
        INSERT INTO usage_daily (user_id, day, meter, quantity, event_count, reported_quantity, reported_count, last_reported_at)
        SELECT user_id, (occurred_at / 86400000000) * 86400000000, meter,
               SUM(quantity), COUNT(*),
               SUM(CASE WHEN reported_at IS NOT NULL THEN quantity ELSE 0 END), SUM(reported_at IS NOT NULL),
               MAX(reported_at)
        FROM usage_events
        GROUP BY 1, 2, 3;
        """;
}
