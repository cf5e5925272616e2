using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Migrations;

namespace UsageBilling.EntityFrameworkCore;

/// <summary>
/// Migration steps UsageBilling's schema needs beyond what EF Core generates, for apps that apply
/// <see cref="UsageBillingModelBuilderExtensions.ApplyUsageBillingModel{TUser}"/> to their own context.
/// </summary>
public static class UsageBillingMigrationBuilderExtensions
{
    /// <summary>
    /// Fills <c>usage_hourly</c> and <c>usage_daily</c> from the events already in <c>usage_events</c>, in
    /// the dialect of the migration's provider (SQLite or PostgreSQL). Call it once, at the end of the
    /// <c>Up</c> of the migration that creates the rollup tables; on a new, empty <c>usage_events</c> it
    /// inserts nothing. Without it, summaries would miss the usage recorded before the rollups existed.
    /// </summary>
    /// <param name="migrationBuilder">The migration's builder.</param>
    /// <returns>The same builder.</returns>
    /// <exception cref="NotSupportedException">The migration targets a provider other than SQLite or PostgreSQL.</exception>
    public static MigrationBuilder BackfillUsageRollups(this MigrationBuilder migrationBuilder)
    {
        ArgumentNullException.ThrowIfNull(migrationBuilder);
        if (migrationBuilder.IsSqlite())
        {
            migrationBuilder.Sql(UsageBillingMigrationSql.BackfillUsageHourlySqlite);
            migrationBuilder.Sql(UsageBillingMigrationSql.BackfillUsageDailySqlite);
        }
        else if (migrationBuilder.IsNpgsql())
        {
            migrationBuilder.Sql(UsageBillingMigrationSql.BackfillUsageHourlyPostgres);
            migrationBuilder.Sql(UsageBillingMigrationSql.BackfillUsageDailyPostgres);
        }
        else
        {
            throw new NotSupportedException(
                $"UsageBilling stores usage on SQLite (Microsoft.EntityFrameworkCore.Sqlite) or PostgreSQL (Npgsql.EntityFrameworkCore.PostgreSQL); this migration targets '{migrationBuilder.ActiveProvider}'.");
        }

        return migrationBuilder;
    }

    /// <summary>
    /// Moves acknowledgement from the events to their reports: call it at the start of the <c>Up</c> of the migration
    /// that drops <c>usage_events.reported_at</c> (the flusher no longer writes every event when Stripe acknowledges
    /// its report). It corrects the rollups' acknowledged columns for the events whose stamp disagrees with
    /// their report's status (those between a canceled report and its resend), so summaries read the same before and after.
    /// </summary>
    /// <param name="migrationBuilder">The migration's builder.</param>
    /// <returns>The same builder.</returns>
    /// <exception cref="NotSupportedException">The migration targets a provider other than SQLite or PostgreSQL.</exception>
    public static MigrationBuilder AcknowledgeUsageByReport(this MigrationBuilder migrationBuilder)
    {
        ArgumentNullException.ThrowIfNull(migrationBuilder);
        if (migrationBuilder.IsSqlite())
        {
            migrationBuilder.Sql(UsageBillingMigrationSql.AcknowledgeByReportSqlite);
        }
        else if (migrationBuilder.IsNpgsql())
        {
            migrationBuilder.Sql(UsageBillingMigrationSql.AcknowledgeByReportPostgres);
        }
        else
        {
            throw new NotSupportedException(
                $"UsageBilling stores usage on SQLite (Microsoft.EntityFrameworkCore.Sqlite) or PostgreSQL (Npgsql.EntityFrameworkCore.PostgreSQL); this migration targets '{migrationBuilder.ActiveProvider}'.");
        }

        return migrationBuilder;
    }

    /// <summary>
    /// Moves the idempotency keys' uniqueness out of <c>usage_events</c> and, on PostgreSQL, partitions that table by
    /// month: call it in the <c>Up</c> of the migration that creates <c>usage_event_keys</c> and drops
    /// <c>ux_usage_events_user_key</c>, after both. It copies every event's key into <c>usage_event_keys</c> (both
    /// providers), then on PostgreSQL rebuilds <c>usage_events</c> range-partitioned by month of <c>occurred_at</c>
    /// (<see cref="UsageBillingMigrationSql.PartitionUsageEventsPostgres"/>): the rows are copied once, so on a large
    /// table run it in a quiet hour. Later months' partitions are created ahead by the retention service
    /// (<see cref="IUsageRetention.EnsurePartitionsAsync"/>); a default partition takes anything outside them. That
    /// service and the prune's partition drops run DDL, so the app's database role must own <c>usage_events</c>. Refused
    /// with a PostgreSQL error naming them: foreign keys referencing <c>usage_events</c>, unique or exclusion constraints
    /// and triggers on it (an app's own; UsageBilling has none), and a table outside the current schema.
    /// </summary>
    /// <param name="migrationBuilder">The migration's builder.</param>
    /// <returns>The same builder.</returns>
    /// <exception cref="NotSupportedException">The migration targets a provider other than SQLite or PostgreSQL.</exception>
    public static MigrationBuilder PartitionUsageEvents(this MigrationBuilder migrationBuilder)
    {
        ArgumentNullException.ThrowIfNull(migrationBuilder);
        if (migrationBuilder.IsSqlite())
        {
            migrationBuilder.Sql(UsageBillingMigrationSql.CopyUsageEventKeys);
        }
        else if (migrationBuilder.IsNpgsql())
        {
            migrationBuilder.Sql(UsageBillingMigrationSql.CopyUsageEventKeys);
            migrationBuilder.Sql(UsageBillingMigrationSql.PartitionUsageEventsPostgres);
        }
        else
        {
            throw new NotSupportedException(
                $"UsageBilling stores usage on SQLite (Microsoft.EntityFrameworkCore.Sqlite) or PostgreSQL (Npgsql.EntityFrameworkCore.PostgreSQL); this migration targets '{migrationBuilder.ActiveProvider}'.");
        }

        return migrationBuilder;
    }

    /// <summary>
    /// The <c>Down</c> of <see cref="PartitionUsageEvents"/>: call it first, before <c>ux_usage_events_user_key</c> is
    /// created again. On PostgreSQL it rebuilds <c>usage_events</c> as one plain table; on SQLite it does nothing
    /// (the keys are still on the events).
    /// </summary>
    /// <param name="migrationBuilder">The migration's builder.</param>
    /// <returns>The same builder.</returns>
    public static MigrationBuilder UnpartitionUsageEvents(this MigrationBuilder migrationBuilder)
    {
        ArgumentNullException.ThrowIfNull(migrationBuilder);
        if (migrationBuilder.IsNpgsql())
        {
            migrationBuilder.Sql(UsageBillingMigrationSql.UnpartitionUsageEventsPostgres);
        }

        return migrationBuilder;
    }

    /// <summary>
    /// The <c>Down</c> of the migration that adds <c>usage_daily.hours_folded</c>: call it first, before the column is
    /// dropped. It gives every folded day its <c>usage_hourly</c> rows back, rebuilt from the day's events (an event
    /// counts as acknowledged when its report is <c>sent</c>), because code before the fold reads a ragged day's hours
    /// from <c>usage_hourly</c>.
    /// </summary>
    /// <param name="migrationBuilder">The migration's builder.</param>
    /// <returns>The same builder.</returns>
    /// <exception cref="NotSupportedException">The migration targets a provider other than SQLite or PostgreSQL.</exception>
    public static MigrationBuilder UnfoldUsageHours(this MigrationBuilder migrationBuilder)
    {
        ArgumentNullException.ThrowIfNull(migrationBuilder);
        if (migrationBuilder.IsSqlite())
        {
            migrationBuilder.Sql(UsageBillingMigrationSql.UnfoldUsageHoursSqlite);
        }
        else if (migrationBuilder.IsNpgsql())
        {
            migrationBuilder.Sql(UsageBillingMigrationSql.UnfoldUsageHoursPostgres);
        }
        else
        {
            throw new NotSupportedException(
                $"UsageBilling stores usage on SQLite (Microsoft.EntityFrameworkCore.Sqlite) or PostgreSQL (Npgsql.EntityFrameworkCore.PostgreSQL); this migration targets '{migrationBuilder.ActiveProvider}'.");
        }

        return migrationBuilder;
    }

    /// <summary>
    /// Moves the request fingerprints from <c>usage_events</c> to <c>usage_event_keys</c>, where the key they are bound
    /// to lives: call it in the <c>Up</c> of the migration that adds <c>usage_event_keys.request_fingerprint</c> and
    /// drops <c>usage_events.request_fingerprint</c>, between the two. Without it, replaying a key with a different
    /// request after the migration would be taken as the same request.
    /// </summary>
    /// <param name="migrationBuilder">The migration's builder.</param>
    /// <returns>The same builder.</returns>
    public static MigrationBuilder MoveRequestFingerprintsToKeys(this MigrationBuilder migrationBuilder)
    {
        ArgumentNullException.ThrowIfNull(migrationBuilder);
        migrationBuilder.Sql(UsageBillingMigrationSql.MoveRequestFingerprintsToKeys);
        return migrationBuilder;
    }

    /// <summary>
    /// The <c>Down</c> of <see cref="MoveRequestFingerprintsToKeys"/>: call it after <c>usage_events.request_fingerprint</c>
    /// is added again and before <c>usage_event_keys.request_fingerprint</c> is dropped.
    /// </summary>
    /// <param name="migrationBuilder">The migration's builder.</param>
    /// <returns>The same builder.</returns>
    public static MigrationBuilder MoveRequestFingerprintsToEvents(this MigrationBuilder migrationBuilder)
    {
        ArgumentNullException.ThrowIfNull(migrationBuilder);
        migrationBuilder.Sql(UsageBillingMigrationSql.MoveRequestFingerprintsToEvents);
        return migrationBuilder;
    }

    /// <summary>
    /// On PostgreSQL, creates the empty partitions of <c>usage_events</c> again (same names and bounds), so the rows
    /// they will take are as narrow as the table's columns after a column is dropped
    /// (<see cref="UsageBillingMigrationSql.RecreateEmptyUsageEventPartitionsPostgres"/>); call it at the end of the
    /// <c>Up</c> of a migration that drops a column of <c>usage_events</c>. On SQLite, and on a plain table, it does
    /// nothing (SQLite rebuilds the table to drop a column).
    /// </summary>
    /// <param name="migrationBuilder">The migration's builder.</param>
    /// <returns>The same builder.</returns>
    public static MigrationBuilder RecreateEmptyUsageEventPartitions(this MigrationBuilder migrationBuilder)
    {
        ArgumentNullException.ThrowIfNull(migrationBuilder);
        if (migrationBuilder.IsNpgsql())
        {
            migrationBuilder.Sql(UsageBillingMigrationSql.RecreateEmptyUsageEventPartitionsPostgres);
        }

        return migrationBuilder;
    }
}

