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

    Task<IReadOnlyList<DailyUsage>> DailyUsageAsync(DbConnection connection, Guid userId, string meter, DateTimeOffset from, DateTimeOffset to, CancellationToken cancellationToken);

    bool IsForeignKeyViolation(Exception exception);
}
