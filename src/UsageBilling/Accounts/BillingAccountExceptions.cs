namespace UsageBilling;

/// <summary>Why a billing-account operation was refused.</summary>
public enum BillingAccountError
{
    /// <summary>The plan id is not configured under <c>UsageBilling:Plans</c>.</summary>
    UnknownPlan,

    /// <summary>The plan's prices are not in Stripe yet (run <c>usagebilling setup</c>).</summary>
    PlanNotProvisioned,

    /// <summary>The account is already on that plan.</summary>
    AlreadyOnPlan,

    /// <summary>The account has no Stripe customer, or no subscription to change or cancel.</summary>
    NoSubscription,

    /// <summary>The subscription belongs to another customer, or to another user of this app.</summary>
    NotYourSubscription,

    /// <summary>The subscription is not in a state that allows the operation (ended, or not one UsageBilling manages).</summary>
    InvalidSubscriptionState,

    /// <summary>The customer's pending usage could not be reported to Stripe before the change; retry later.</summary>
    UsageNotFlushed,
}

/// <summary>A billing-account operation that cannot be done as asked; nothing was changed.</summary>
public sealed class BillingAccountException : Exception
{
    /// <summary>Creates the exception.</summary>
    public BillingAccountException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">What is wrong.</param>
    public BillingAccountException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and a cause.</summary>
    /// <param name="message">What is wrong.</param>
    /// <param name="innerException">The cause.</param>
    public BillingAccountException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Creates the exception for a refusal.</summary>
    /// <param name="error">Why.</param>
    /// <param name="message">What is wrong, for people.</param>
    public BillingAccountException(BillingAccountError error, string message)
        : base(message) => Error = error;

    /// <summary>Why the operation was refused.</summary>
    public BillingAccountError Error { get; }
}

/// <summary>A Stripe customer that is already tied to another user of this app; nothing was written.</summary>
public sealed class BillingAccountConflictException : Exception
{
    /// <summary>Creates the exception.</summary>
    public BillingAccountConflictException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">What conflicts.</param>
    public BillingAccountConflictException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and a cause.</summary>
    /// <param name="message">What conflicts.</param>
    /// <param name="innerException">The cause.</param>
    public BillingAccountConflictException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
