using Microsoft.Extensions.Options;
using UsageBilling.Configuration;
using UsageBilling.Provisioning;

namespace UsageBilling.Web.Billing;

/// <summary>The configured plans joined with the Stripe ids the provisioner found or created at start.</summary>
internal sealed class PlanCatalog(IOptions<UsageBillingOptions> options)
{
    private volatile ProvisioningResult? _stripe;

    public IReadOnlyDictionary<string, PlanDefinition> Plans => options.Value.Plans;

    public IReadOnlyDictionary<string, MeterDefinition> Meters => options.Value.Meters;

    public ProvisioningResult? Stripe => _stripe;

    public void Set(ProvisioningResult result) => _stripe = result;

    public string PlanName(string planId) => Plans.TryGetValue(planId, out var p) ? p.DisplayName ?? planId : planId;

    /// <summary>The Stripe prices of a hybrid subscription to <paramref name="planId"/>, or <see langword="null"/> when not provisioned.</summary>
    public IReadOnlyList<string>? PricesOf(string planId)
    {
        if (_stripe is not { } s || !Plans.TryGetValue(planId, out var plan) || s.BasePriceId(planId) is not { } basePrice)
        {
            return null;
        }

        var prices = new List<string> { basePrice };
        foreach (var meter in plan.Meters.Keys.Order(StringComparer.Ordinal))
        {
            if (s.MeteredPriceId(planId, meter) is not { } id)
            {
                return null;
            }

            prices.Add(id);
        }

        return prices;
    }

    /// <summary>Which plan and meter a Stripe price stands for (meter <see langword="null"/> = the flat fee).</summary>
    public (string? Plan, string? Meter) Describe(string priceId)
    {
        var o = _stripe?.Objects.FirstOrDefault(x => x.StripeId == priceId && x.Kind is ProvisionedObjectKind.BasePrice or ProvisionedObjectKind.MeteredPrice);
        return (o?.Plan, o?.Meter);
    }
}
