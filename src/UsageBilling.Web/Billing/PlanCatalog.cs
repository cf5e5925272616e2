using Microsoft.Extensions.Options;

namespace UsageBilling.Web.Billing;

/// <summary>The configured plans and meters, for the pages that show them.</summary>
internal sealed class PlanCatalog(IOptions<UsageBillingOptions> options)
{
    public IReadOnlyDictionary<string, PlanDefinition> Plans => options.Value.Plans;

    public IReadOnlyDictionary<string, MeterDefinition> Meters => options.Value.Meters;

    public string PlanName(string planId) => Plans.TryGetValue(planId, out var p) ? p.DisplayName ?? planId : planId;
}
