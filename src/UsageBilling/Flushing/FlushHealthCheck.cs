using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;

namespace UsageBilling;

/// <summary>Unhealthy when Stripe refuses our key or the oldest unreported usage is older than <see cref="FlushOptions.MaxLag"/>.</summary>
internal sealed class FlushHealthCheck(IUsageFlushStore store, FlushState state, IOptions<FlushOptions> options, TimeProvider time) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        if (state.ConfigurationError is { } error)
        {
            return HealthCheckResult.Unhealthy($"Stripe refused the configured key: {error}");
        }

        var backlog = await store.GetBacklogAsync(cancellationToken).ConfigureAwait(false);
        var data = new Dictionary<string, object>
        {
            ["pending_events"] = backlog.PendingEvents,
            ["pending_events_without_customer"] = backlog.PendingEventsWithoutCustomer,
            ["dead_reports"] = backlog.ReportsByStatus.GetValueOrDefault(Storage.UsageReportStatus.Dead),
            ["needs_review_reports"] = backlog.ReportsByStatus.GetValueOrDefault(Storage.UsageReportStatus.NeedsReview),
        };
        if (backlog.OldestUnreportedAt is { } oldest)
        {
            var lag = time.GetUtcNow() - oldest;
            data["lag_seconds"] = Math.Round(lag.TotalSeconds);
            if (lag > options.Value.MaxLag)
            {
                return HealthCheckResult.Unhealthy($"The oldest unreported usage is {lag.TotalMinutes:F0} minutes old (limit {options.Value.MaxLag.TotalMinutes:F0}).", data: data);
            }
        }

        return HealthCheckResult.Healthy("Usage is flowing to Stripe.", data);
    }
}
