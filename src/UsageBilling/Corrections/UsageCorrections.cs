using Microsoft.Extensions.Options;
using UsageBilling.Storage;

namespace UsageBilling;

/// <summary>Applies the correction rules and delegates the one transaction to the store.</summary>
internal sealed class UsageCorrections(IUsageCorrectionStore store, IOptions<UsageBillingOptions> options, TimeProvider time) : IUsageCorrections
{
    /// <summary>Stripe cancels events it received in the last 24 hours; an hour is left for the flusher to send the cancel.</summary>
    internal static readonly TimeSpan CancelWindow = TimeSpan.FromHours(23);

    /// <summary>A compensating event must be inside Stripe's 35 days with a day left for the flusher.</summary>
    internal static readonly TimeSpan CompensationWindow = UsageRules.MaxAge - TimeSpan.FromDays(1);

    private readonly HashSet<string> _countMeters = [.. options.Value.Meters.Where(m => m.Value.Aggregation == MeterAggregation.Count).Select(m => m.Key)];

    public Task<UsageCorrectionInfo> VoidAsync(Guid eventId, string actor, string reason, CancellationToken cancellationToken = default)
    {
        if (string.IsNullOrWhiteSpace(actor) || actor.Length > 200)
        {
            throw new UsageCorrectionRefusedException(UsageCorrectionRefusal.InvalidRequest, eventId, "A correction needs who asks for it (1–200 characters).");
        }

        if (string.IsNullOrWhiteSpace(reason) || reason.Length > 2000)
        {
            throw new UsageCorrectionRefusedException(UsageCorrectionRefusal.InvalidRequest, eventId, "A correction needs a reason (1–2000 characters).");
        }

        var now = time.GetUtcNow();
        return store.VoidEventAsync(
            new VoidEventRequest(Guid.CreateVersion7(now), eventId, actor.Trim(), reason.Trim(), now, now - CancelWindow, now - CompensationWindow, _countMeters),
            cancellationToken);
    }

    public Task<IReadOnlyList<UsageCorrectionInfo>> ListAsync(Guid? userId = null, int limit = 100, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(limit, 1000);
        return store.ListAsync(userId, limit, cancellationToken);
    }
}
