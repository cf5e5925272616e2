namespace UsageBilling;

/// <summary>
/// The metadata keys UsageBilling writes on Stripe objects and reads back: the only place they are spelled.
/// </summary>
public static class UsageBillingMetadata
{
    /// <summary>On products, prices and subscriptions: the configured plan id (<c>ub_plan</c>).</summary>
    public const string PlanKey = "ub_plan";

    /// <summary>On metered prices: the meter's event name (<c>ub_meter</c>).</summary>
    public const string MeterKey = "ub_meter";

    /// <summary>On customers, subscriptions and Checkout sessions: the app's user id (<c>user_id</c>).</summary>
    public const string UserIdKey = "user_id";
}
