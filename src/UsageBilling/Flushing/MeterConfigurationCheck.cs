using Stripe;
using Stripe.Billing;

namespace UsageBilling;

/// <summary>A Stripe meter as the flusher's start check needs it.</summary>
/// <param name="EventName">The meter's event name.</param>
/// <param name="Status">active or inactive.</param>
/// <param name="Formula">sum, count or last.</param>
/// <param name="CustomerPayloadKey">The payload key naming the customer.</param>
/// <param name="ValuePayloadKey">The payload key carrying the value.</param>
internal sealed record StripeMeterInfo(string EventName, string? Status, string? Formula, string? CustomerPayloadKey, string? ValuePayloadKey);

/// <summary>Lists the account's meters (the start check's one Stripe read).</summary>
internal interface IStripeMeterDirectory
{
    Task<IReadOnlyList<StripeMeterInfo>> ListAsync(CancellationToken cancellationToken);
}

/// <summary>Lists meters through Stripe.net, every page.</summary>
internal sealed class StripeMeterDirectory(IStripeClient client) : IStripeMeterDirectory
{
    public async Task<IReadOnlyList<StripeMeterInfo>> ListAsync(CancellationToken cancellationToken)
    {
        var meters = new List<StripeMeterInfo>();
        await foreach (var meter in new MeterService(client).ListAutoPagingAsync(new MeterListOptions { Limit = 100 }, cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            meters.Add(new StripeMeterInfo(meter.EventName, meter.Status, meter.DefaultAggregation?.Formula, meter.CustomerMapping?.EventPayloadKey, meter.ValueSettings?.EventPayloadKey));
        }

        return meters;
    }
}

/// <summary>
/// What the flusher checks before its first claim: a report's value must follow from the data, not from
/// whichever process's configuration happens to flush. The flusher pre-aggregates (a count meter's report
/// carries the number of events), so every Stripe meter must add up what it receives (formula <c>sum</c>)
/// under the payload keys the flusher sends; and a meter's configured aggregation must agree with how this
/// database's newest reports of it were valued. Any mismatch refuses the flush, naming the meter.
/// </summary>
internal static class MeterConfigurationCheck
{
    /// <summary>The payload key the flusher puts the customer under.</summary>
    public const string CustomerKey = "stripe_customer_id";

    /// <summary>The payload key the flusher puts the value under.</summary>
    public const string ValueKey = "value";

    /// <summary>The mismatches, one readable sentence each (empty when all is well).</summary>
    public static List<string> Mismatches(IReadOnlyDictionary<string, MeterDefinition> configured, IReadOnlyList<StripeMeterInfo>? stripeMeters, IReadOnlyList<MeterAggregationEvidence> evidence)
    {
        var problems = new List<string>();
        foreach (var (eventName, definition) in configured.OrderBy(m => m.Key, StringComparer.Ordinal))
        {
            var remote = stripeMeters?.Where(m => m.EventName == eventName).OrderByDescending(m => m.Status == "active").FirstOrDefault();
            if (remote is not null)
            {
                if (!string.Equals(remote.Formula, "sum", StringComparison.Ordinal))
                {
                    problems.Add($"the Stripe meter '{eventName}' aggregates with formula '{remote.Formula}', but UsageBilling sends one pre-aggregated value per report and needs 'sum' (Stripe cannot change a formula: use a new event name)");
                }

                if (remote.CustomerPayloadKey is { } ck && !string.Equals(ck, CustomerKey, StringComparison.Ordinal))
                {
                    problems.Add($"the Stripe meter '{eventName}' reads the customer from payload key '{ck}', but UsageBilling sends '{CustomerKey}'");
                }

                if (remote.ValuePayloadKey is { } vk && !string.Equals(vk, ValueKey, StringComparison.Ordinal))
                {
                    problems.Add($"the Stripe meter '{eventName}' reads the value from payload key '{vk}', but UsageBilling sends '{ValueKey}'");
                }
            }

            if (evidence.FirstOrDefault(e => e.Meter == eventName) is { } seen && seen.Aggregation != definition.Aggregation)
            {
                problems.Add($"meter '{eventName}' is configured with Aggregation {definition.Aggregation}, but this database's reports of it are valued as {seen.Aggregation} (newest: report {seen.ReportId}, claimed {seen.CreatedAt:O}); set UsageBilling:Meters:{eventName}:Aggregation to {seen.Aggregation} in this process's configuration (to change a meter's aggregation, use a new event name)");
            }
        }

        foreach (var seen in evidence.Where(e => e.Aggregation == MeterAggregation.Count && !configured.ContainsKey(e.Meter)).OrderBy(e => e.Meter, StringComparer.Ordinal))
        {
            problems.Add($"meter '{seen.Meter}' is not configured in this process (so its usage would be summed), but this database's reports of it are valued as Count (newest: report {seen.ReportId}); add UsageBilling:Meters:{seen.Meter} with Aggregation Count");
        }

        return problems;
    }
}
