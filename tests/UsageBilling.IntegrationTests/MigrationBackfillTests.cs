using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;
using UsageBilling.EntityFrameworkCore;
using UsageBilling.EntityFrameworkCore.Entities;
using UsageBilling.IntegrationTests.Infrastructure;

namespace UsageBilling.IntegrationTests;

/// <summary>
/// The migrations that fill or correct the rollups from data already stored: <c>BackfillUsageRollups()</c> (the
/// UsageRollups migrations) and <c>AcknowledgeUsageByReport()</c> (the AcknowledgedByReport migrations).
/// </summary>
public abstract class MigrationBackfillTests(Provider provider) : IAsyncLifetime
{
    private static readonly DateTimeOffset Now = new(2026, 11, 20, 15, 30, 0, TimeSpan.Zero);
    private TestDatabase _database = null!;

    protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync() => _database = await TestDatabase.CreateAsync(provider);

    public async ValueTask DisposeAsync() => await _database.DisposeAsync();

    [Fact]
    public async Task RollupMigration_OnEventsRecordedBeforeIt_BackfillsHourlyAndDailyRollups()
    {
        await using var db = CreateContext();
        var migrations = db.Database.GetMigrations().ToList();
        var rollups = migrations.FindIndex(m => m.EndsWith("_UsageRollups", StringComparison.Ordinal));
        Assert.True(rollups > 0, $"No UsageRollups migration after an earlier one in [{string.Join(", ", migrations)}]");
        await db.GetService<IMigrator>().MigrateAsync(migrations[rollups - 1], Ct);

        // Events from before the rollups: two users, two meters, several hours and days, some acknowledged.
        // Written in SQL with that schema's columns: today's model has columns the old schema lacks.
        var users = new[] { Guid.NewGuid(), Guid.NewGuid() };
        foreach (var u in users)
        {
            await InsertAsync(db, "INSERT INTO users (id, email, created_at) VALUES ({0}, {1}, {2})", Id(u), null, Time(Now.AddDays(-10)));
        }

        // The acknowledged ones are in a sent report (as the flusher leaves them), stamped with its sent time.
        var sent = users.ToDictionary(u => u, _ => Guid.CreateVersion7(Now));
        foreach (var u in users)
        {
            await InsertReportAsync(db, sent[u], "sent", Now.AddMinutes(-1));
        }

        for (var i = 0; i < 120; i++)
        {
            var acknowledged = i % 4 == 0;
            await InsertAsync(
                db,
                "INSERT INTO usage_events (id, user_id, meter, quantity, occurred_at, idempotency_key, report_id, reported_at, created_at) VALUES ({0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}, {8})",
                Id(Guid.CreateVersion7(Now)),
                Id(users[i % 2]),
                i % 3 == 0 ? "api_calls" : "ai_messages",
                (long)(i % 7 + 1),
                Time(Now.AddMinutes(-i * 97)),
                $"k-{i}",
                acknowledged ? Id(sent[users[i % 2]]) : null,
                acknowledged ? Time(Now.AddMinutes(-1)) : null,
                Time(Now.AddMinutes(-i * 97)));
        }

        await db.Database.MigrateAsync(Ct);

        Assert.Empty(await db.Database.GetPendingMigrationsAsync(Ct));
        await RollupAssert.MatchesEventsAsync(db, Ct);
        Assert.Equal(120, await db.UsageDaily.SumAsync(d => d.EventCount, Ct));
        Assert.Equal(30, await db.UsageHourly.SumAsync(h => h.ReportedCount, Ct));
    }

    /// <summary>
    /// The AcknowledgedByReport migration drops <c>usage_events.reported_at</c>: from then on an event is acknowledged
    /// when its report is <c>sent</c>. Events whose stamp disagreed with their report (moved from a canceled report to
    /// its pending resend, still stamped) leave the rollups' acknowledged columns; the rest stay as they were.
    /// </summary>
    [Fact]
    public async Task AcknowledgedByReportMigration_OnStampedEvents_RollupsFollowTheReports()
    {
        await using var db = CreateContext();
        var migrations = db.Database.GetMigrations().ToList();
        var target = migrations.FindIndex(m => m.EndsWith("_AcknowledgedByReport", StringComparison.Ordinal));
        Assert.True(target > 0, $"No AcknowledgedByReport migration after an earlier one in [{string.Join(", ", migrations)}]");
        await db.GetService<IMigrator>().MigrateAsync(migrations[target - 1], Ct);

        var user = Guid.NewGuid();
        await InsertAsync(db, "INSERT INTO users (id, email, created_at) VALUES ({0}, {1}, {2})", Id(user), null, Time(Now.AddDays(-10)));
        var (sentReport, resend, review) = (Guid.CreateVersion7(Now), Guid.CreateVersion7(Now), Guid.CreateVersion7(Now));
        await InsertReportAsync(db, sentReport, "sent", Now.AddMinutes(-30));
        await InsertReportAsync(db, resend, "pending", null);
        await InsertReportAsync(db, review, "needs_review", null);

        // 40 events: a quarter each in the sent report (stamped), the pending resend (stamped: moved there by a
        // correction's cancel), the report whose answer was lost (not stamped), and none (not claimed yet).
        var expectedAcknowledged = 0L;
        for (var i = 0; i < 40; i++)
        {
            var (report, stamped) = (i % 4) switch { 0 => ((Guid?)sentReport, true), 1 => (resend, true), 2 => (review, false), _ => ((Guid?)null, false) };
            var quantity = (long)(i % 5 + 1);
            expectedAcknowledged += report == sentReport ? quantity : 0;
            await InsertAsync(
                db,
                "INSERT INTO usage_events (id, user_id, meter, quantity, occurred_at, idempotency_key, report_id, reported_at, created_at, request_fingerprint) VALUES ({0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}, {8}, {9})",
                Id(Guid.CreateVersion7(Now)), Id(user), "ai_messages", quantity, Time(Now.AddMinutes(-i * 53)), $"a-{i}",
                report is { } r ? Id(r) : null, stamped ? Time(Now.AddMinutes(-30)) : null, Time(Now.AddMinutes(-i * 53)), null);
        }

        // The rollups as the code before the migration kept them: acknowledged = stamped.
        foreach (var sql in provider == Provider.Sqlite ? StampedRollupsSqlite : StampedRollupsPostgres)
        {
            await db.Database.ExecuteSqlRawAsync(sql, Ct);
        }

        Assert.Equal(20, await db.UsageHourly.SumAsync(h => h.ReportedCount, Ct));

        await db.Database.MigrateAsync(Ct);

        Assert.Empty(await db.Database.GetPendingMigrationsAsync(Ct));
        await RollupAssert.MatchesEventsAsync(db, Ct);
        Assert.Equal(10, await db.UsageHourly.SumAsync(h => h.ReportedCount, Ct));
        Assert.Equal(10, await db.UsageDaily.SumAsync(d => d.ReportedCount, Ct));
        Assert.Equal(expectedAcknowledged, await db.UsageDaily.SumAsync(d => d.ReportedQuantity, Ct));
        Assert.Equal(40, await db.UsageDaily.SumAsync(d => d.EventCount, Ct));
    }

    /// <summary>
    /// A database from before the rollups, upgraded to the latest in one go, with stamped events in a report a thin
    /// event later made dead: the UsageRollups migration counts them by stamp (as that schema did), AcknowledgedByReport
    /// takes them out again (a dead report's events are not acknowledged) — once, not twice.
    /// </summary>
    [Fact]
    public async Task PreRollupDatabase_StampedEventsInDeadReport_UpgradedInOneGo_NotAcknowledged()
    {
        await using var db = CreateContext();
        var migrations = db.Database.GetMigrations().ToList();
        var rollups = migrations.FindIndex(m => m.EndsWith("_UsageRollups", StringComparison.Ordinal));
        await db.GetService<IMigrator>().MigrateAsync(migrations[rollups - 1], Ct);
        var user = Guid.NewGuid();
        await InsertAsync(db, "INSERT INTO users (id, email, created_at) VALUES ({0}, {1}, {2})", Id(user), null, Time(Now.AddDays(-10)));
        var dead = Guid.CreateVersion7(Now);
        await InsertReportAsync(db, dead, "dead", Now.AddMinutes(-30));
        for (var i = 0; i < 4; i++)
        {
            await InsertAsync(
                db,
                "INSERT INTO usage_events (id, user_id, meter, quantity, occurred_at, idempotency_key, report_id, reported_at, created_at) VALUES ({0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}, {8})",
                Id(Guid.CreateVersion7(Now)), Id(user), "ai_messages", 2L, Time(Now.AddMinutes(-i * 7)), $"d-{i}", Id(dead), Time(Now.AddMinutes(-30)), Time(Now.AddMinutes(-i * 7)));
        }

        await db.Database.MigrateAsync(Ct);

        await RollupAssert.MatchesEventsAsync(db, Ct);
        Assert.Equal((0, 0L, 8L), (await db.UsageHourly.SumAsync(h => h.ReportedCount, Ct), await db.UsageDaily.SumAsync(d => d.ReportedQuantity, Ct), await db.UsageDaily.SumAsync(d => d.Quantity, Ct)));
    }

    private static readonly string[] StampedRollupsPostgres =
    [
        """
        INSERT INTO usage_hourly (user_id, hour, meter, quantity, event_count, reported_quantity, reported_count, last_reported_at)
        SELECT user_id, date_bin('1 hour', occurred_at, TIMESTAMPTZ '1970-01-01 00:00:00+00'), meter, SUM(quantity), COUNT(*),
               COALESCE(SUM(quantity) FILTER (WHERE reported_at IS NOT NULL), 0), COUNT(*) FILTER (WHERE reported_at IS NOT NULL), MAX(reported_at)
        FROM usage_events GROUP BY 1, 2, 3
        """,
        """
        INSERT INTO usage_daily (user_id, day, meter, quantity, event_count, reported_quantity, reported_count, last_reported_at)
        SELECT user_id, date_bin('1 day', occurred_at, TIMESTAMPTZ '1970-01-01 00:00:00+00'), meter, SUM(quantity), COUNT(*),
               COALESCE(SUM(quantity) FILTER (WHERE reported_at IS NOT NULL), 0), COUNT(*) FILTER (WHERE reported_at IS NOT NULL), MAX(reported_at)
        FROM usage_events GROUP BY 1, 2, 3
        """,
    ];

    private static readonly string[] StampedRollupsSqlite =
    [
        """
        INSERT INTO usage_hourly (user_id, hour, meter, quantity, event_count, reported_quantity, reported_count, last_reported_at)
        SELECT user_id, (occurred_at / 3600000000) * 3600000000, meter, SUM(quantity), COUNT(*),
               SUM(CASE WHEN reported_at IS NOT NULL THEN quantity ELSE 0 END), SUM(reported_at IS NOT NULL), MAX(reported_at)
        FROM usage_events GROUP BY 1, 2, 3
        """,
        """
        INSERT INTO usage_daily (user_id, day, meter, quantity, event_count, reported_quantity, reported_count, last_reported_at)
        SELECT user_id, (occurred_at / 86400000000) * 86400000000, meter, SUM(quantity), COUNT(*),
               SUM(CASE WHEN reported_at IS NOT NULL THEN quantity ELSE 0 END), SUM(reported_at IS NOT NULL), MAX(reported_at)
        FROM usage_events GROUP BY 1, 2, 3
        """,
    ];

    /// <summary>
    /// The MonthlyPartitions migration on a populated database: the idempotency keys move to <c>usage_event_keys</c>,
    /// and on PostgreSQL <c>usage_events</c> is rebuilt partitioned by month, every event in its month's partition, with
    /// its indexes and foreign key; its <c>Down</c> gives back one plain table with the same rows, and <c>Up</c> runs again.
    /// </summary>
    [Fact]
    public async Task MonthlyPartitionsMigration_OnPopulatedDatabase_SameEventsKeysMovedAndDownRestores()
    {
        await using var db = CreateContext();
        var migrations = db.Database.GetMigrations().ToList();
        var target = migrations.FindIndex(m => m.EndsWith("_MonthlyPartitions", StringComparison.Ordinal));
        Assert.True(target > 0, $"No MonthlyPartitions migration after an earlier one in [{string.Join(", ", migrations)}]");
        await db.GetService<IMigrator>().MigrateAsync(migrations[target - 1], Ct);

        var users = new[] { Guid.NewGuid(), Guid.NewGuid() };
        foreach (var u in users)
        {
            await InsertAsync(db, "INSERT INTO users (id, email, created_at) VALUES ({0}, {1}, {2})", Id(u), null, Time(Now.AddDays(-200)));
        }

        var report = Guid.CreateVersion7(Now);
        await InsertReportAsync(db, report, "sent", Now.AddDays(-1));

        // Five months of events, one every 12 hours; every fifth without a key, a third in a report.
        for (var i = 0; i < 300; i++)
        {
            await InsertAsync(
                db,
                "INSERT INTO usage_events (id, user_id, meter, quantity, occurred_at, idempotency_key, report_id, created_at, request_fingerprint) VALUES ({0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}, {8})",
                Id(Guid.CreateVersion7(Now)), Id(users[i % 2]), i % 3 == 0 ? "api_calls" : "ai_messages", (long)(i % 7 + 1), Time(Now.AddHours(-i * 12)),
                i % 5 == 0 ? null : $"p-{i}", i % 3 == 0 ? Id(report) : null, Time(Now.AddHours(-i * 12)), i % 10 == 1 ? $"fp-{i}" : null);
        }

        var before = await EventsAsync(db);
        Assert.Equal(300, before.Count);

        await db.Database.MigrateAsync(Ct);

        Assert.Empty(await db.Database.GetPendingMigrationsAsync(Ct));
        Assert.Equal(before, await EventsAsync(db));
        var keys = await db.Set<UsageEventKey>().AsNoTracking().ToListAsync(Ct);
        Assert.Equal(
            before.Where(e => e.IdempotencyKey is not null).Select(e => (e.UserId, e.IdempotencyKey!, e.Id)).Order(),
            keys.Select(k => (k.UserId, k.IdempotencyKey, k.EventId)).Order());
        Assert.Equal(240, keys.Count);
        Assert.Equal(
            Enumerable.Range(0, 300).Where(i => i % 10 == 1).Select(i => ($"p-{i}", $"fp-{i}")).Order(),
            keys.Where(k => k.RequestFingerprint is not null).Select(k => (k.IdempotencyKey, k.RequestFingerprint!)).Order());

        if (provider == Provider.Postgres)
        {
            // One partition per month from the oldest event's, each event in its own month's, the default one empty.
            var placed = await ScalarsAsync(db, "SELECT DISTINCT tableoid::regclass::text || '=' || to_char(date_trunc('month', occurred_at, 'UTC') AT TIME ZONE 'UTC', '\"usage_events_y\"YYYY\"m\"MM') FROM usage_events");
            Assert.NotEmpty(placed);
            Assert.All(placed, p => Assert.Equal(p.Split('=')[0], p.Split('=')[1]));
            Assert.Equal(6, placed.Count);
            Assert.Equal(["id, occurred_at"], await ScalarsAsync(db, "SELECT string_agg(a.attname, ', ' ORDER BY k.ord) FROM pg_constraint c CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord) JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum WHERE c.conname = 'pk_usage_events' GROUP BY c.oid"));
            Assert.Equal(
                ["ck_usage_events_quantity", "fk_usage_events_user", "ix_usage_events_report", "ix_usage_events_unclaimed", "ix_usage_events_user_time", "pk_usage_events"],
                await ScalarsAsync(db, "SELECT relname::text FROM pg_class WHERE oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'usage_events'::regclass) UNION SELECT conname::text FROM pg_constraint WHERE conrelid = 'usage_events'::regclass ORDER BY 1"));
            Assert.Empty(await ScalarsAsync(db, "SELECT relname::text FROM pg_class WHERE relname LIKE 'usage_events_unpartitioned%'"));
        }

        // A second use of a stored key is refused by the key table now.
        await Assert.ThrowsAnyAsync<DbUpdateException>(async () =>
        {
            db.Set<UsageEventKey>().Add(new UsageEventKey { UserId = keys[0].UserId, IdempotencyKey = keys[0].IdempotencyKey, EventId = Guid.NewGuid() });
            await db.SaveChangesAsync(Ct);
        });
        db.ChangeTracker.Clear();

        await db.GetService<IMigrator>().MigrateAsync(migrations[target - 1], Ct);
        Assert.Equal(before, await EventsAsync(db));
        if (provider == Provider.Postgres)
        {
            Assert.Empty(await ScalarsAsync(db, "SELECT partrelid::regclass::text FROM pg_partitioned_table WHERE partrelid = to_regclass('usage_events')"));
            Assert.Equal(["id"], await ScalarsAsync(db, "SELECT string_agg(a.attname, ', ') FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey) WHERE c.conname = 'pk_usage_events' GROUP BY c.oid"));
        }

        await db.Database.MigrateAsync(Ct);
        Assert.Equal(before, await EventsAsync(db));
        Assert.Equal(240, await db.Set<UsageEventKey>().CountAsync(Ct));
    }

    /// <summary>
    /// The FoldedHours migration's <c>Down</c> (<c>UnfoldUsageHours()</c>): code before it reads a ragged day's hours from
    /// <c>usage_hourly</c>, so every folded day gets its hourly rows back from its events, and a stray row written into
    /// a folded day after the fold (never read while folded) goes.
    /// </summary>
    [Fact]
    public async Task FoldedHoursMigration_DownAfterAFold_HourlyRowsRebuiltFromTheEvents()
    {
        await using var db = CreateContext();
        await db.Database.MigrateAsync(Ct);
        var migrations = db.Database.GetMigrations().ToList();
        var target = migrations.FindIndex(m => m.EndsWith("_FoldedHours", StringComparison.Ordinal));
        Assert.True(target > 0, $"No FoldedHours migration after an earlier one in [{string.Join(", ", migrations)}]");

        var users = new[] { Guid.NewGuid(), Guid.NewGuid() };
        foreach (var u in users)
        {
            await InsertAsync(db, "INSERT INTO users (id, email, created_at) VALUES ({0}, {1}, {2})", Id(u), null, Time(Now.AddDays(-100)));
        }

        var report = Guid.CreateVersion7(Now);
        await InsertReportAsync(db, report, "sent", Now.AddDays(-1));
        for (var i = 0; i < 200; i++)
        {
            await InsertAsync(
                db,
                "INSERT INTO usage_events (id, user_id, meter, quantity, occurred_at, idempotency_key, report_id, created_at) VALUES ({0}, {1}, {2}, {3}, {4}, {5}, {6}, {7})",
                Id(Guid.CreateVersion7(Now)), Id(users[i % 2]), i % 3 == 0 ? "api_calls" : "ai_messages", (long)(i % 7 + 1), Time(Now.AddHours(-i * 7).AddMinutes(-i)),
                null, i % 3 == 1 ? Id(report) : null, Time(Now.AddHours(-i * 7)));
        }

        var (hourly, daily) = provider == Provider.Sqlite
            ? (UsageBillingMigrationSql.BackfillUsageHourlySqlite, UsageBillingMigrationSql.BackfillUsageDailySqlite)
            : (UsageBillingMigrationSql.BackfillUsageHourlyPostgres, UsageBillingMigrationSql.BackfillUsageDailyPostgres);
        await db.Database.ExecuteSqlRawAsync(hourly, Ct);
        await db.Database.ExecuteSqlRawAsync(daily, Ct);
        await RollupAssert.MatchesEventsAsync(db, Ct);

        // A fold of everything before the cutoff, then a stray hourly row in a folded day.
        var cutoff = new DateTimeOffset(Now.UtcDateTime.Date.AddDays(-10), TimeSpan.Zero);
        var folded = await InsertAsync(db, "UPDATE usage_daily SET hours_folded = TRUE WHERE day < {0}", Time(cutoff));
        Assert.True(folded > 50, $"folded {folded}");
        await InsertAsync(db, "DELETE FROM usage_hourly WHERE hour < {0}", Time(cutoff));
        await InsertAsync(
            db,
            "INSERT INTO usage_hourly (user_id, hour, meter, quantity, event_count, reported_quantity, reported_count, last_reported_at) VALUES ({0}, {1}, {2}, {3}, {4}, {5}, {6}, {7})",
            Id(users[0]), Time(cutoff.AddDays(-3).AddHours(5)), "ai_messages", -4L, -1L, 0L, 0L, null);

        await db.GetService<IMigrator>().MigrateAsync(migrations[target - 1], Ct);
        await db.Database.MigrateAsync(Ct);

        Assert.Empty(await db.Database.GetPendingMigrationsAsync(Ct));
        await RollupAssert.MatchesEventsAsync(db, Ct);
        Assert.Equal(0, await db.UsageDaily.CountAsync(d => d.HoursFolded, Ct));
    }

    /// <summary>
    /// The SlimUsageEvents migration on a populated database: each key's request fingerprint moves from its event to
    /// <c>usage_event_keys</c> (<c>MoveRequestFingerprintsToKeys()</c>), the events are otherwise the same; on PostgreSQL
    /// the summary's index no longer covers columns and the empty partitions are created again without the dropped
    /// column, with their indexes, while the months holding rows keep them. <c>Down</c> puts the fingerprints back.
    /// </summary>
    [Fact]
    public async Task SlimUsageEventsMigration_OnPopulatedDatabase_FingerprintsMovedToKeysDownRestores()
    {
        await using var db = CreateContext();
        var migrations = db.Database.GetMigrations().ToList();
        var target = migrations.FindIndex(m => m.EndsWith("_SlimUsageEvents", StringComparison.Ordinal));
        Assert.True(target > 0, $"No SlimUsageEvents migration after an earlier one in [{string.Join(", ", migrations)}]");
        await db.GetService<IMigrator>().MigrateAsync(migrations[target - 1], Ct);

        var user = Guid.NewGuid();
        await InsertAsync(db, "INSERT INTO users (id, email, created_at) VALUES ({0}, {1}, {2})", Id(user), null, Time(Now.AddDays(-200)));

        // Five months of events, one every 30 hours; every fourth without a key, every third keyed one with a fingerprint.
        var fingerprints = new Dictionary<string, string>();
        for (var i = 0; i < 120; i++)
        {
            var id = Guid.CreateVersion7(Now);
            var key = i % 4 == 0 ? null : $"k-{i}";
            var fingerprint = key is not null && i % 3 == 0 ? $"fp-{i}" : null;
            await InsertAsync(
                db,
                "INSERT INTO usage_events (id, user_id, meter, quantity, occurred_at, idempotency_key, report_id, created_at, request_fingerprint) VALUES ({0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}, {8})",
                Id(id), Id(user), "ai_messages", 1L, Time(Now.AddHours(-i * 30)), key, null, Time(Now.AddHours(-i * 30)), fingerprint);
            if (key is not null)
            {
                await InsertAsync(db, "INSERT INTO usage_event_keys (user_id, idempotency_key, event_id) VALUES ({0}, {1}, {2})", Id(user), key, Id(id));
            }

            if (fingerprint is not null)
            {
                fingerprints[key!] = fingerprint;
            }
        }

        Assert.Equal(30, fingerprints.Count);
        var before = await EventsAsync(db);

        // An empty partition ahead with a grant and a storage option of its own: both survive its re-creation.
        var ahead = "";
        if (provider == Provider.Postgres)
        {
            ahead = (await ScalarsAsync(db, "SELECT max(c.relname)::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'usage_events'::regclass AND c.relname <> 'usage_events_default'")).Single();
            await db.Database.ExecuteSqlRawAsync(string.Concat("GRANT SELECT ON ", ahead, " TO PUBLIC; ALTER TABLE ", ahead, " SET (fillfactor = 90)"), Ct);
        }

        await db.Database.MigrateAsync(Ct);

        Assert.Empty(await db.Database.GetPendingMigrationsAsync(Ct));
        Assert.Equal(before, await EventsAsync(db));
        var keys = await db.Set<UsageEventKey>().AsNoTracking().ToListAsync(Ct);
        Assert.Equal(90, keys.Count);
        Assert.Equal(
            fingerprints.Select(f => (f.Key, f.Value)).Order(),
            keys.Where(k => k.RequestFingerprint is not null).Select(k => (k.IdempotencyKey, k.RequestFingerprint!)).Order());

        // The summary's index keyed by user and time alone, covering nothing.
        Assert.Equal("(user_id, occurred_at)", await UserTimeIndexAsync(db, provider));
        if (provider == Provider.Postgres)
        {
            Assert.Empty(await ScalarsAsync(db, "SELECT attname::text FROM pg_attribute WHERE attrelid = 'usage_events'::regclass AND attname = 'request_fingerprint'"));

            // Partitions holding rows keep the dropped column's place; the empty ones (the months ahead, the default)
            // were made again without it, each with the parent's four indexes.
            var partitions = await ScalarsAsync(db, """
                SELECT c.relname || ':' || (SELECT count(*) FROM pg_index x WHERE x.indrelid = c.oid) || ':' ||
                       EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attisdropped)
                FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = 'usage_events'::regclass ORDER BY 1
                """);
            var populated = await ScalarsAsync(db, "SELECT DISTINCT tableoid::regclass::text FROM usage_events");
            Assert.NotEmpty(populated);
            Assert.Contains(partitions, p => p.StartsWith("usage_events_default:", StringComparison.Ordinal));
            Assert.True(partitions.Count - populated.Count >= 3, string.Join(", ", partitions));
            Assert.All(partitions, p =>
            {
                var parts = p.Split(':');
                Assert.Equal("4", parts[1]);
                Assert.Equal(populated.Contains(parts[0]) ? "true" : "false", parts[2]);
            });
            Assert.Equal(
                ["fillfactor=90 =r/"],
                await ScalarsAsync(db, string.Concat("SELECT array_to_string(reloptions, ',') || ' ' || (SELECT string_agg(left(x::text, 3), ',') FROM unnest(relacl) x WHERE x::text LIKE '=%') FROM pg_class WHERE relname = '", ahead, "'")));
        }

        await db.GetService<IMigrator>().MigrateAsync(migrations[target - 1], Ct);
        Assert.Equal(
            fingerprints.Select(f => $"{f.Key}={f.Value}").Order(),
            (await ScalarsAsync(db, "SELECT idempotency_key || '=' || request_fingerprint FROM usage_events WHERE request_fingerprint IS NOT NULL")).Order());
        Assert.Equal(
            provider == Provider.Postgres ? "(user_id, occurred_at, meter) INCLUDE (quantity, report_id)" : "(user_id, occurred_at, meter)",
            await UserTimeIndexAsync(db, provider));

        await db.Database.MigrateAsync(Ct);
        Assert.Equal(before, await EventsAsync(db));
        Assert.Equal(30, await db.Set<UsageEventKey>().CountAsync(k => k.RequestFingerprint != null, Ct));
        Assert.Equal("(user_id, occurred_at)", await UserTimeIndexAsync(db, provider));
    }

    /// <summary>The columns of <c>ix_usage_events_user_time</c> as its definition lists them, e.g. <c>(user_id, occurred_at)</c>.</summary>
    private static async Task<string> UserTimeIndexAsync(UsageBillingDbContext db, Provider provider) =>
        (await ScalarsAsync(
            db,
            provider == Provider.Postgres
                ? "SELECT regexp_replace(pg_get_indexdef('ix_usage_events_user_time'::regclass), '^.* USING btree ', '')"
                : "SELECT replace(substr(sql, instr(sql, '\" (') + 2), '\"', '') FROM sqlite_master WHERE type = 'index' AND name = 'ix_usage_events_user_time'")).Single();

    /// <summary>Every event's columns, in id order (the columns this and the previous schema share).</summary>
    private static async Task<List<EventRow>> EventsAsync(UsageBillingDbContext db) =>
        await db.UsageEvents.AsNoTracking().OrderBy(e => e.Id)
            .Select(e => new EventRow(e.Id, e.UserId, e.Meter, e.Quantity, e.OccurredAt, e.IdempotencyKey, e.ReportId, e.CreatedAt))
            .ToListAsync(Ct);

    private sealed record EventRow(Guid Id, Guid UserId, string Meter, long Quantity, DateTimeOffset OccurredAt, string? IdempotencyKey, Guid? ReportId, DateTimeOffset CreatedAt);

    protected static async Task<List<string>> ScalarsAsync(UsageBillingDbContext db, string sql)
    {
        var connection = db.Database.GetDbConnection();
        await db.Database.OpenConnectionAsync(Ct);
        try
        {
            await using var command = connection.CreateCommand();
            command.CommandText = sql;
            var values = new List<string>();
            await using var reader = await command.ExecuteReaderAsync(Ct);
            while (await reader.ReadAsync(Ct))
            {
                values.Add(reader.GetString(0));
            }

            return values;
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }

    /// <summary>A report row in the columns every schema version has; <paramref name="sentAt"/> only for a sent one.</summary>
    private Task<int> InsertReportAsync(UsageBillingDbContext db, Guid id, string status, DateTimeOffset? sentAt) => InsertAsync(
        db,
        "INSERT INTO usage_reports (id, stripe_customer_id, meter, quantity, event_count, timestamp, period_start, period_end, status, attempts, next_attempt_at, first_attempt_at, created_at, sent_at) VALUES ({0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}, {8}, {9}, {10}, {11}, {12}, {13})",
        Id(id), $"cus_{id:N}", "ai_messages", 1L, 1, Time(Now.AddDays(-1)), Time(Now.AddDays(-20)), Time(Now.AddDays(10)), status, 1, Time(Now), Time(Now.AddHours(-1)), Time(Now.AddHours(-1)),
        sentAt is { } at ? Time(at) : null);

    /// <summary>Runs an INSERT whose <c>{n}</c> placeholders become parameters, or NULL for a null value.</summary>
    private static Task<int> InsertAsync(UsageBillingDbContext db, string sql, params object?[] values)
    {
        var parameters = new List<object>();
        for (var i = 0; i < values.Length; i++)
        {
            sql = sql.Replace($"{{{i}}}", values[i] is null ? "NULL" : $"{{{parameters.Count}}}", StringComparison.Ordinal);
            if (values[i] is { } value)
            {
                parameters.Add(value);
            }
        }

        return db.Database.ExecuteSqlRawAsync(sql, parameters, Ct);
    }

    /// <summary>A Guid as the provider stores it (SQLite: EF's upper-case text).</summary>
    private object Id(Guid id) => provider == Provider.Sqlite ? id.ToString().ToUpperInvariant() : id;

    /// <summary>An instant as the provider stores it (SQLite: UsageBilling's microseconds since the epoch).</summary>
    private object Time(DateTimeOffset t) => provider == Provider.Sqlite ? UsageBillingSqliteConventions.ToUnixMicroseconds(t) : t;

    protected UsageBillingDbContext CreateContext() => provider == Provider.Sqlite
        ? new SqliteUsageBillingDbContext(new DbContextOptionsBuilder<SqliteUsageBillingDbContext>().UseSqlite(_database.ConnectionString).Options)
        : new PostgresUsageBillingDbContext(new DbContextOptionsBuilder<PostgresUsageBillingDbContext>().UseNpgsql(_database.ConnectionString).Options);
}

public sealed class SqliteMigrationBackfillTests() : MigrationBackfillTests(Provider.Sqlite);

public sealed class PostgresMigrationBackfillTests() : MigrationBackfillTests(Provider.Postgres)
{
    /// <summary>
    /// PostgreSQL: what the rebuild cannot carry over (here an app's trigger on usage_events) stops the migration with
    /// an error naming it, and nothing is half-written: the table is still the plain one, the key table absent.
    /// </summary>
    [Fact]
    public async Task MonthlyPartitionsMigration_AppTriggerOnEvents_RefusedByNameNothingChanged()
    {
        await using var db = CreateContext();
        var migrations = db.Database.GetMigrations().ToList();
        var target = migrations.FindIndex(m => m.EndsWith("_MonthlyPartitions", StringComparison.Ordinal));
        await db.GetService<IMigrator>().MigrateAsync(migrations[target - 1], Ct);
        await db.Database.ExecuteSqlRawAsync("CREATE FUNCTION app_audit() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$", Ct);
        await db.Database.ExecuteSqlRawAsync("CREATE TRIGGER app_audit_events BEFORE INSERT ON usage_events FOR EACH ROW EXECUTE FUNCTION app_audit()", Ct);

        var error = await Assert.ThrowsAnyAsync<Exception>(() => db.Database.MigrateAsync(Ct));
        Assert.Contains("app_audit_events", error.Message, StringComparison.Ordinal);
        Assert.Contains(migrations[target], await db.Database.GetPendingMigrationsAsync(Ct));
        Assert.Empty(await ScalarsAsync(db, "SELECT partrelid::regclass::text FROM pg_partitioned_table WHERE partrelid = to_regclass('usage_events')"));
        Assert.Empty(await ScalarsAsync(db, "SELECT relname::text FROM pg_class WHERE relname IN ('usage_event_keys', 'usage_events_unpartitioned')"));
        Assert.Equal(["ux_usage_events_user_key"], await ScalarsAsync(db, "SELECT relname::text FROM pg_class WHERE relname = 'ux_usage_events_user_key'"));
    }
}

