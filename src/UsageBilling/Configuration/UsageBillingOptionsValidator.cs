using System.Text.RegularExpressions;
using Microsoft.Extensions.Options;

namespace UsageBilling;

/// <summary>Validates <see cref="UsageBillingOptions"/> at start so a wrong setting fails before the first call.</summary>
internal sealed partial class UsageBillingOptionsValidator : IValidateOptions<UsageBillingOptions>
{
    public ValidateOptionsResult Validate(string? name, UsageBillingOptions options)
    {
        var errors = new List<string>();
        ValidateRetention(options.Retention, errors);
        if (options.Meters.Count == 0)
        {
            errors.Add("UsageBilling:Meters must define at least one meter (keyed by its Stripe event name).");
        }

        foreach (var (eventName, meter) in options.Meters)
        {
            if (!EventNamePattern().IsMatch(eventName))
            {
                errors.Add($"Meter '{eventName}': the event name must be 1-100 characters of letters, digits, '_', '-', '.' or ':'.");
            }

            if (!Enum.IsDefined(meter.Aggregation))
            {
                errors.Add($"Meter '{eventName}': unknown aggregation '{meter.Aggregation}' (use Sum or Count).");
            }
        }

        foreach (var (planId, plan) in options.Plans)
        {
            var prefix = $"Plan '{planId}'";
            if (plan.MonthlyPrice < 0)
            {
                errors.Add($"{prefix}: MonthlyPrice must not be negative.");
            }

            if (string.IsNullOrWhiteSpace(plan.Currency) || plan.Currency.Length != 3)
            {
                errors.Add($"{prefix}: Currency must be a three-letter ISO code such as 'usd'.");
            }

            foreach (var (meterName, price) in plan.Meters)
            {
                ValidatePrice($"{prefix}, meter '{meterName}'", price, errors);
                if (!options.Meters.ContainsKey(meterName))
                {
                    errors.Add($"{prefix} prices meter '{meterName}', which is not defined under UsageBilling:Meters.");
                }
            }
        }

        if (options.DefaultPlan is { } defaultPlan && !options.Plans.ContainsKey(defaultPlan))
        {
            errors.Add($"UsageBilling:DefaultPlan names plan '{defaultPlan}', which is not defined under UsageBilling:Plans.");
        }

        if (options.Recording.MaxBatchSize is < 1 or > 10_000)
        {
            errors.Add("UsageBilling:Recording:MaxBatchSize must be between 1 and 10000.");
        }

        if (options.Recording.MaxConcurrentBatches is < 1 or > 64)
        {
            errors.Add("UsageBilling:Recording:MaxConcurrentBatches must be between 1 and 64.");
        }

        ValidateLimits(options, errors);
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    private static void ValidateLimits(UsageBillingOptions options, List<string> errors)
    {
        var limits = options.Limits;
        if (!Enum.IsDefined(limits.NoPlan))
        {
            errors.Add($"UsageBilling:Limits:NoPlan: unknown policy '{limits.NoPlan}' (use Deny, FreeAllowance or Allow).");
        }

        foreach (var (meter, allowance) in limits.NoPlanAllowance)
        {
            if (!options.Meters.ContainsKey(meter))
            {
                errors.Add($"UsageBilling:Limits:NoPlanAllowance names meter '{meter}', which is not defined under UsageBilling:Meters.");
            }

            if (allowance < 0)
            {
                errors.Add($"UsageBilling:Limits:NoPlanAllowance:{meter} must not be negative.");
            }
        }

        for (var i = 0; i < limits.Alerts.Count; i++)
        {
            var alert = limits.Alerts[i];
            if (!Enum.IsDefined(alert.Kind))
            {
                errors.Add($"UsageBilling:Limits:Alerts:{i}: unknown kind '{alert.Kind}' (use PercentOfIncluded, PercentOfLimit, Quantity or Amount).");
            }

            if (alert.Value <= 0)
            {
                errors.Add($"UsageBilling:Limits:Alerts:{i}: Value must be above zero.");
            }

            if (alert.Meter is { } meter && !options.Meters.ContainsKey(meter))
            {
                errors.Add($"UsageBilling:Limits:Alerts:{i} names meter '{meter}', which is not defined under UsageBilling:Meters.");
            }
        }

        var d = limits.Delivery;
        if (d.PollInterval < TimeSpan.FromMilliseconds(10) || d.PollInterval > TimeSpan.FromHours(1))
        {
            errors.Add("UsageBilling:Limits:Delivery:PollInterval must be between 10 ms and 1 hour.");
        }

        if (d.LeaseDuration < TimeSpan.FromSeconds(1))
        {
            errors.Add("UsageBilling:Limits:Delivery:LeaseDuration must be at least 1 second.");
        }

        if (d.RetryBaseDelay <= TimeSpan.Zero || d.RetryMaxDelay < d.RetryBaseDelay)
        {
            errors.Add("UsageBilling:Limits:Delivery:RetryBaseDelay must be positive and RetryMaxDelay at least as long.");
        }

        if (d.BatchSize is < 1 or > 1000)
        {
            errors.Add("UsageBilling:Limits:Delivery:BatchSize must be between 1 and 1000.");
        }
    }

    private static void ValidatePrice(string prefix, PlanMeterPrice price, List<string> errors)
    {
        if (price.Included < 0)
        {
            errors.Add($"{prefix}: Included must not be negative.");
        }

        if (price.HardLimit is { } limit && limit < price.Included)
        {
            errors.Add($"{prefix}: HardLimit ({limit}) must not be below Included ({price.Included}).");
        }

        if (price.SpendLimit is < 0)
        {
            errors.Add($"{prefix}: SpendLimit must not be negative.");
        }

        var hasUnit = price.UnitPrice is not null;
        var hasTiers = price.Tiers.Count > 0;
        if (hasUnit == hasTiers)
        {
            errors.Add($"{prefix}: set exactly one of UnitPrice or Tiers.");
            return;
        }

        if (price.UnitPrice is < 0)
        {
            errors.Add($"{prefix}: UnitPrice must not be negative.");
        }

        if (!Enum.IsDefined(price.TiersMode))
        {
            errors.Add($"{prefix}: unknown TiersMode '{price.TiersMode}' (use Graduated or Volume).");
        }

        long previous = price.Included;
        for (var i = 0; i < price.Tiers.Count; i++)
        {
            var tier = price.Tiers[i];
            var last = i == price.Tiers.Count - 1;
            if (tier.UnitAmount < 0 || tier.FlatAmount < 0)
            {
                errors.Add($"{prefix}: tier {i + 1} has a negative amount.");
            }

            if (last && tier.UpTo is not null)
            {
                errors.Add($"{prefix}: the last tier must be unbounded (no UpTo).");
            }
            else if (!last && tier.UpTo is null)
            {
                errors.Add($"{prefix}: only the last tier may be unbounded; tier {i + 1} has no UpTo.");
            }
            else if (tier.UpTo is { } upTo)
            {
                if (upTo <= previous)
                {
                    errors.Add($"{prefix}: tier {i + 1} UpTo ({upTo}) must be above the allowance and the previous tier ({previous}).");
                }

                previous = upTo;
            }
        }
    }

    /// <summary>The retention settings' errors (also checked on their own by <see cref="RetentionSettings"/>).</summary>
    internal static void ValidateRetention(RetentionOptions retention, List<string> errors)
    {
        if (retention.Keep is { } keep && keep < IUsageRetention.MinimumKeep)
        {
            errors.Add($"UsageBilling:Retention:Keep ({keep}) must be at least {IUsageRetention.MinimumKeep.TotalDays:0} days (Stripe's meter-event window: younger events can still be recorded, sent or corrected), or unset to keep everything.");
        }

        if (retention.Interval < TimeSpan.FromMinutes(1) || retention.Interval > TimeSpan.FromDays(7))
        {
            errors.Add("UsageBilling:Retention:Interval must be between 1 minute and 7 days.");
        }

        if (retention.BatchSize is < 100 or > 100_000)
        {
            errors.Add("UsageBilling:Retention:BatchSize must be between 100 and 100000.");
        }
    }

    [GeneratedRegex("^[A-Za-z0-9_.:-]{1,100}$")]
    private static partial Regex EventNamePattern();
}
