using System.Data.Common;
using UsageBilling.Storage;

namespace UsageBilling.EntityFrameworkCore.Storage;

/// <summary>The provider-specific SQL of the hot paths, where EF's change tracker would be the bottleneck.</summary>
internal interface IUsageSqlDialect
{
    int DefaultConcurrentBatches { get; }

    /// <summary>Multi-row insert skipping existing (user, key) rows; returns the ids actually inserted.</summary>
    Task<HashSet<Guid>> InsertAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<NewUsageEvent> events, CancellationToken cancellationToken);

    /// <summary>The stored rows for the given (user, key) pairs.</summary>
    Task<Dictionary<(Guid UserId, string Key), StoredEventOutcome>> FindByKeysAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<(Guid UserId, string Key)> keys, CancellationToken cancellationToken);

    /// <summary>Adds the deltas to <c>usage_hourly</c>, creating missing rows; rows are written in the given (lock) order.</summary>
    Task UpsertHourlyAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<HourlyDelta> deltas, CancellationToken cancellationToken);

    /// <summary>
    /// Usage per meter and UTC day: whole hours [<paramref name="hoursFrom"/>, <paramref name="hoursTo"/>) from
    /// <c>usage_hourly</c>, the ragged ends [<paramref name="from"/>, <paramref name="hoursFrom"/>) and
    /// [<paramref name="hoursTo"/>, <paramref name="to"/>) from <c>usage_events</c>. A (meter, day) may appear twice; callers merge.
    /// </summary>
    Task<IReadOnlyList<MeterDayUsage>> UsageByDayAsync(DbConnection connection, Guid userId, DateTimeOffset from, DateTimeOffset hoursFrom, DateTimeOffset hoursTo, DateTimeOffset to, CancellationToken cancellationToken);

    bool IsForeignKeyViolation(Exception exception);
}
