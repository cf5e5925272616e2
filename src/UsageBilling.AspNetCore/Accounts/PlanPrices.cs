using Microsoft.Extensions.Options;
using Stripe;
using UsageBilling.Storage;

namespace UsageBilling;

/// <summary>
/// The Stripe prices of each configured plan, looked up once through the provisioner (read only) and kept
/// once every plan was found; until then every call looks again, so running <c>usagebilling setup</c>
/// later needs no restart.
/// </summary>
internal sealed class PlanPrices(IStripeProvisioner provisioner, IOptions<UsageBillingOptions> options)
{
    private volatile ProvisioningResult? _complete;

    public IReadOnlyDictionary<string, PlanDefinition> Plans => options.Value.Plans;

    /// <summary>The plan's prices: the flat price first, then one metered price per meter in name order.</summary>
    /// <exception cref="BillingAccountException">The plan is unknown or not provisioned.</exception>
    public async Task<PlanPriceSet> ForPlanAsync(string planId, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(planId) || !Plans.TryGetValue(planId, out var plan))
        {
            throw new BillingAccountException(BillingAccountError.UnknownPlan, $"Unknown plan '{planId}': configured plans are {string.Join(", ", Plans.Keys.Order(StringComparer.Ordinal))}.");
        }

        var result = _complete ?? await LookUpAsync(ct).ConfigureAwait(false);
        var basePrice = result.BasePriceId(planId);
        var metered = plan.Meters.Keys.Order(StringComparer.Ordinal).Select(m => (Meter: m, Price: result.MeteredPriceId(planId, m))).ToList();
        if (basePrice is null || metered.Any(m => m.Price is null))
        {
            throw new BillingAccountException(BillingAccountError.PlanNotProvisioned, $"The plan '{planId}' is not set up in Stripe yet: run 'usagebilling setup' first.");
        }

        return new PlanPriceSet(planId, basePrice, [.. metered.Select(m => (m.Meter, m.Price!))]);
    }

    private async Task<ProvisioningResult> LookUpAsync(CancellationToken ct)
    {
        var result = await provisioner.ProvisionAsync(dryRun: true, ct).ConfigureAwait(false);
        var complete = Plans.All(p => result.BasePriceId(p.Key) is not null && p.Value.Meters.Keys.All(m => result.MeteredPriceId(p.Key, m) is not null));
        if (complete)
        {
            _complete = result;
        }

        return result;
    }

    /// <summary>What the ledger keeps of a Stripe subscription: its items, the meter of each metered price of ours, and its plan.</summary>
    public static SubscriptionSnapshot Snapshot(Subscription subscription)
    {
        ArgumentNullException.ThrowIfNull(subscription);
        var items = subscription.Items?.Data ?? [];
        var plan = subscription.Metadata is not null && subscription.Metadata.TryGetValue(UsageBillingMetadata.PlanKey, out var p) ? p : null;
        var snapshotItems = new List<SubscriptionItemSnapshot>(items.Count);
        foreach (var item in items)
        {
            var metadata = item.Price?.Metadata;
            var meter = metadata is not null && metadata.TryGetValue(UsageBillingMetadata.MeterKey, out var m) ? m : null;
            plan ??= metadata is not null && metadata.TryGetValue(UsageBillingMetadata.PlanKey, out var pp) ? pp : null;
            snapshotItems.Add(new SubscriptionItemSnapshot(item.Id, item.Price?.Id ?? "", meter, Utc(item.CurrentPeriodStart), Utc(item.CurrentPeriodEnd)));
        }

        return new SubscriptionSnapshot(subscription.Id, subscription.CustomerId, subscription.Status, plan, snapshotItems);
    }

    /// <summary>Whether two snapshots say the same (the webhook path re-reads until they do).</summary>
    public static bool SameState(SubscriptionSnapshot a, SubscriptionSnapshot b) =>
        a.SubscriptionId == b.SubscriptionId && a.Status == b.Status && a.PlanId == b.PlanId && a.Items.SequenceEqual(b.Items);

    private static DateTimeOffset Utc(DateTime value) => new(DateTime.SpecifyKind(value, DateTimeKind.Utc));
}

/// <summary>A plan's Stripe prices.</summary>
/// <param name="PlanId">The plan.</param>
/// <param name="BasePrice">The flat monthly price.</param>
/// <param name="Metered">One metered price per meter.</param>
internal sealed record PlanPriceSet(string PlanId, string BasePrice, IReadOnlyList<(string Meter, string Price)> Metered);
