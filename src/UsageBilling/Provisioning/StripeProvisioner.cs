using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Stripe;
using Stripe.Billing;

namespace UsageBilling;

/// <summary>Provisions meters, products and prices through Stripe.net, idempotently.</summary>
internal sealed partial class StripeProvisioner(StripeClient stripe, IOptions<UsageBillingOptions> options, ILogger<StripeProvisioner> logger) : IStripeProvisioner
{
    /// <summary>Metadata key marking the products and prices UsageBilling owns.</summary>
    internal const string PlanMetadataKey = UsageBillingMetadata.PlanKey;

    /// <summary>Metadata key naming the meter of a metered price.</summary>
    internal const string MeterMetadataKey = UsageBillingMetadata.MeterKey;

    private readonly UsageBillingOptions _options = options.Value;

    /// <summary>The lookup key of a plan's flat monthly price.</summary>
    /// <param name="plan">The plan id.</param>
    /// <returns>The lookup key.</returns>
    public static string BaseLookupKey(string plan) => $"ub_{plan}_base";

    /// <summary>The lookup key of a plan's metered price for a meter.</summary>
    /// <param name="plan">The plan id.</param>
    /// <param name="meter">The meter event name.</param>
    /// <returns>The lookup key.</returns>
    public static string MeteredLookupKey(string plan, string meter) => $"ub_{plan}_{meter}";

    public async Task<ProvisioningResult> ProvisionAsync(bool dryRun = false, CancellationToken cancellationToken = default)
    {
        var objects = new List<ProvisionedObject>();
        var meterIds = new Dictionary<string, string?>(StringComparer.Ordinal);

        var existingMeters = new Dictionary<string, Meter>(StringComparer.Ordinal);
        await foreach (var m in stripe.V1.Billing.Meters.ListAutoPagingAsync(new MeterListOptions { Limit = 100 }, cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            // Active meters win over inactive ones with the same event name (event names are unique per account anyway).
            if (!existingMeters.TryGetValue(m.EventName, out var known) || known.Status != "active")
            {
                existingMeters[m.EventName] = m;
            }
        }

        foreach (var (eventName, meter) in _options.Meters.OrderBy(m => m.Key, StringComparer.Ordinal))
        {
            var result = await ProvisionMeterAsync(eventName, meter, existingMeters.GetValueOrDefault(eventName), dryRun, cancellationToken).ConfigureAwait(false);
            meterIds[eventName] = result.StripeId;
            objects.Add(result);
        }

        var products = new Dictionary<string, Product>(StringComparer.Ordinal);
        await foreach (var p in stripe.V1.Products.ListAutoPagingAsync(new ProductListOptions { Limit = 100 }, cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            if (p.Metadata is not null && p.Metadata.TryGetValue(PlanMetadataKey, out var plan) && (!products.TryGetValue(plan, out var known) || !known.Active))
            {
                products[plan] = p;
            }
        }

        foreach (var (planId, plan) in _options.Plans.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            var product = await ProvisionProductAsync(planId, plan, products.GetValueOrDefault(planId), dryRun, cancellationToken).ConfigureAwait(false);
            objects.Add(product);

            var lookupKeys = new List<string> { BaseLookupKey(planId) };
            lookupKeys.AddRange(plan.Meters.Keys.Select(m => MeteredLookupKey(planId, m)));
            var prices = await FindPricesAsync(lookupKeys, cancellationToken).ConfigureAwait(false);

            objects.Add(await ProvisionPriceAsync(
                ProvisionedObjectKind.BasePrice, planId, meter: null, BaseLookupKey(planId), product.StripeId, FlatPrice(plan), prices.GetValueOrDefault(BaseLookupKey(planId)), dryRun, cancellationToken).ConfigureAwait(false));

            foreach (var (meterName, price) in plan.Meters.OrderBy(m => m.Key, StringComparer.Ordinal))
            {
                var key = MeteredLookupKey(planId, meterName);
                var wanted = MeteredPrice(plan, price, meterIds.GetValueOrDefault(meterName));
                objects.Add(await ProvisionPriceAsync(
                    ProvisionedObjectKind.MeteredPrice, planId, meterName, key, product.StripeId, wanted, prices.GetValueOrDefault(key), dryRun, cancellationToken).ConfigureAwait(false));
            }
        }

        var outcome = new ProvisioningResult(dryRun, objects);
        LogProvisioned(logger, dryRun ? "Dry run: would create" : "Created", outcome.CreatedCount, outcome.UpdatedCount, objects.Count);
        return outcome;
    }

    private async Task<ProvisionedObject> ProvisionMeterAsync(string eventName, MeterDefinition meter, Meter? existing, bool dryRun, CancellationToken ct)
    {
        var displayName = meter.DisplayName ?? eventName;
        // Always "sum": the flusher pre-aggregates each report (a count meter's report carries the
        // number of events), so Stripe must add up the values it receives, never count the calls.
        const string formula = "sum";
        if (existing is null)
        {
            if (dryRun)
            {
                return new(ProvisionedObjectKind.Meter, eventName, null, ProvisioningAction.Created, null, eventName);
            }

            var created = await stripe.V1.Billing.Meters.CreateAsync(
                new MeterCreateOptions
                {
                    DisplayName = displayName,
                    EventName = eventName,
                    DefaultAggregation = new MeterDefaultAggregationOptions { Formula = formula },
                    CustomerMapping = new MeterCustomerMappingOptions { Type = "by_id", EventPayloadKey = "stripe_customer_id" },
                    ValueSettings = new MeterValueSettingsOptions { EventPayloadKey = "value" },
                },
                Idempotent($"meter:{eventName}:{formula}"),
                ct).ConfigureAwait(false);
            return new(ProvisionedObjectKind.Meter, eventName, created.Id, ProvisioningAction.Created, null, eventName);
        }

        string? note = null;
        if (!string.Equals(existing.DefaultAggregation?.Formula, formula, StringComparison.Ordinal))
        {
            // Stripe never changes a meter's formula; an operator must create a new meter name.
            note = $"The Stripe meter aggregates with '{existing.DefaultAggregation?.Formula}' but the configuration says '{formula}'; Stripe cannot change this. Use a new event name to change the aggregation.";
            LogFormulaMismatch(logger, eventName, existing.DefaultAggregation?.Formula, formula);
        }

        var changes = new List<string>();
        if (existing.Status != "active")
        {
            changes.Add("reactivated");
        }

        if (!string.Equals(existing.DisplayName, displayName, StringComparison.Ordinal))
        {
            changes.Add("display name");
        }

        if (changes.Count == 0)
        {
            return new(ProvisionedObjectKind.Meter, eventName, existing.Id, ProvisioningAction.Unchanged, null, eventName, note);
        }

        if (!dryRun)
        {
            if (existing.Status != "active")
            {
                await stripe.V1.Billing.Meters.ReactivateAsync(existing.Id, cancellationToken: ct).ConfigureAwait(false);
            }

            if (!string.Equals(existing.DisplayName, displayName, StringComparison.Ordinal))
            {
                await stripe.V1.Billing.Meters.UpdateAsync(existing.Id, new MeterUpdateOptions { DisplayName = displayName }, cancellationToken: ct).ConfigureAwait(false);
            }
        }

        return new(ProvisionedObjectKind.Meter, eventName, existing.Id, ProvisioningAction.Updated, null, eventName, note ?? string.Join(", ", changes));
    }

    private async Task<ProvisionedObject> ProvisionProductAsync(string planId, PlanDefinition plan, Product? existing, bool dryRun, CancellationToken ct)
    {
        var name = plan.DisplayName ?? planId;
        if (existing is null)
        {
            if (dryRun)
            {
                return new(ProvisionedObjectKind.Product, planId, null, ProvisioningAction.Created, planId, null);
            }

            var created = await stripe.V1.Products.CreateAsync(
                new ProductCreateOptions { Name = name, Metadata = new Dictionary<string, string> { [PlanMetadataKey] = planId } },
                Idempotent($"product:{planId}"),
                ct).ConfigureAwait(false);
            return new(ProvisionedObjectKind.Product, planId, created.Id, ProvisioningAction.Created, planId, null);
        }

        if (string.Equals(existing.Name, name, StringComparison.Ordinal) && existing.Active)
        {
            return new(ProvisionedObjectKind.Product, planId, existing.Id, ProvisioningAction.Unchanged, planId, null);
        }

        if (!dryRun)
        {
            await stripe.V1.Products.UpdateAsync(existing.Id, new ProductUpdateOptions { Name = name, Active = true }, cancellationToken: ct).ConfigureAwait(false);
        }

        return new(ProvisionedObjectKind.Product, planId, existing.Id, ProvisioningAction.Updated, planId, null, "name or active flag");
    }

    private async Task<Dictionary<string, Price>> FindPricesAsync(List<string> lookupKeys, CancellationToken ct)
    {
        var found = new Dictionary<string, Price>(StringComparer.Ordinal);

        // Stripe accepts at most 10 lookup keys per list call.
        foreach (var chunk in lookupKeys.Chunk(10))
        {
            var options = new PriceListOptions { LookupKeys = [.. chunk], Active = true, Limit = 100, Expand = ["data.tiers"] };
            await foreach (var price in stripe.V1.Prices.ListAutoPagingAsync(options, cancellationToken: ct).ConfigureAwait(false))
            {
                if (price.LookupKey is { } key)
                {
                    found[key] = price;
                }
            }
        }

        return found;
    }

    private async Task<ProvisionedObject> ProvisionPriceAsync(
        ProvisionedObjectKind kind, string planId, string? meter, string lookupKey, string? productId, WantedPrice wanted, Price? existing, bool dryRun, CancellationToken ct)
    {
        string? difference = existing is null ? null : Difference(wanted, existing, productId);
        if (existing is not null && difference is null)
        {
            return new(kind, lookupKey, existing.Id, ProvisioningAction.Unchanged, planId, meter);
        }

        var action = existing is null ? ProvisioningAction.Created : ProvisioningAction.Updated;
        if (dryRun || productId is null || (meter is not null && wanted.MeterId is null))
        {
            return new(kind, lookupKey, null, action, planId, meter, difference);
        }

        var options = new PriceCreateOptions
        {
            Product = productId,
            Currency = wanted.Currency,
            LookupKey = lookupKey,
            TransferLookupKey = existing is not null,
            Nickname = meter is null ? $"{planId} monthly fee" : $"{planId} {meter}",
            Metadata = meter is null
                ? new Dictionary<string, string> { [PlanMetadataKey] = planId }
                : new Dictionary<string, string> { [PlanMetadataKey] = planId, [MeterMetadataKey] = meter },
            Recurring = new PriceRecurringOptions
            {
                Interval = "month",
                UsageType = meter is null ? "licensed" : "metered",
                Meter = wanted.MeterId,
            },
        };
        if (wanted.Tiers is null)
        {
            options.BillingScheme = "per_unit";
            options.UnitAmountDecimal = wanted.UnitAmountCents;
        }
        else
        {
            options.BillingScheme = "tiered";
            options.TiersMode = wanted.TiersMode;
            options.Tiers = [.. wanted.Tiers.Select(t => new PriceTierOptions
            {
                UpTo = t.UpTo is { } upTo ? upTo : PriceTierUpTo.Inf,
                UnitAmountDecimal = t.UnitAmountCents,
                FlatAmountDecimal = t.FlatAmountCents == 0 ? null : t.FlatAmountCents,
            })];
        }

        // The key names the content, so a retry after a crash re-finds the same price instead of making a twin.
        var created = await stripe.V1.Prices.CreateAsync(options, Idempotent($"price:{lookupKey}:{wanted.Fingerprint}"), ct).ConfigureAwait(false);
        if (existing is not null)
        {
            await stripe.V1.Prices.UpdateAsync(existing.Id, new PriceUpdateOptions { Active = false }, cancellationToken: ct).ConfigureAwait(false);
        }

        return new(kind, lookupKey, created.Id, action, planId, meter, difference);
    }

    private static string? Difference(WantedPrice wanted, Price existing, string? productId)
    {
        if (!string.Equals(existing.Currency, wanted.Currency, StringComparison.OrdinalIgnoreCase))
        {
            return "currency changed";
        }

        if (productId is not null && existing.ProductId != productId)
        {
            return "product changed";
        }

        if (wanted.MeterId is not null && existing.Recurring?.Meter != wanted.MeterId)
        {
            return "meter changed";
        }

        if (wanted.Tiers is null)
        {
            var amount = existing.UnitAmountDecimal ?? existing.UnitAmount;
            return existing.BillingScheme == "per_unit" && amount == wanted.UnitAmountCents ? null : "amount changed";
        }

        if (existing.BillingScheme != "tiered" || existing.TiersMode != wanted.TiersMode)
        {
            return "tiers mode changed";
        }

        var tiers = existing.Tiers ?? [];
        if (tiers.Count != wanted.Tiers.Count)
        {
            return "tiers changed";
        }

        for (var i = 0; i < tiers.Count; i++)
        {
            var have = tiers[i];
            var want = wanted.Tiers[i];
            if (have.UpTo != want.UpTo
                || (have.UnitAmountDecimal ?? have.UnitAmount ?? 0m) != want.UnitAmountCents
                || (have.FlatAmountDecimal ?? have.FlatAmount ?? 0m) != want.FlatAmountCents)
            {
                return "tiers changed";
            }
        }

        return null;
    }

    private static WantedPrice FlatPrice(PlanDefinition plan) =>
        new(plan.Currency.ToLowerInvariant(), Cents(plan.MonthlyPrice), null, null, null);

    private static WantedPrice MeteredPrice(PlanDefinition plan, PlanMeterPrice price, string? meterId)
    {
        var schedule = PriceSchedule.From(price);
        var tiers = schedule.Tiers.Select(t => new WantedTier(t.UpTo, Cents(t.UnitAmount), Cents(t.FlatAmount))).ToList();
        return new(plan.Currency.ToLowerInvariant(), null, schedule.Mode == TiersMode.Volume ? "volume" : "graduated", tiers, meterId);
    }

    /// <summary>Currency units to Stripe's minor units; <c>unit_amount_decimal</c> keeps fractions of a cent.</summary>
    private static decimal Cents(decimal amount) => decimal.Round(amount * 100m, 12) / 1.000000000000m;

    private static RequestOptions Idempotent(string key) => new() { IdempotencyKey = $"ub-provision:{key}" };

    [LoggerMessage(Level = LogLevel.Information, Message = "Stripe provisioning: {Verb} {Created}, updated {Updated}, of {Total} objects")]
    private static partial void LogProvisioned(ILogger logger, string verb, int created, int updated, int total);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Meter {EventName} aggregates with {Existing} in Stripe but is configured as {Configured}")]
    private static partial void LogFormulaMismatch(ILogger logger, string eventName, string? existing, string configured);

    private sealed record WantedTier(long? UpTo, decimal UnitAmountCents, decimal FlatAmountCents);

    private sealed record WantedPrice(string Currency, decimal? UnitAmountCents, string? TiersMode, List<WantedTier>? Tiers, string? MeterId)
    {
        public string Fingerprint => string.Create(CultureInfo.InvariantCulture, $"{Currency}:{UnitAmountCents}:{TiersMode}:{MeterId}:{string.Join(";", Tiers?.Select(t => $"{t.UpTo}/{t.UnitAmountCents}/{t.FlatAmountCents}") ?? [])}");
    }
}
