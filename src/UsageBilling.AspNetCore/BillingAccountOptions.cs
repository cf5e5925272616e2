using Microsoft.Extensions.Options;

namespace UsageBilling;

/// <summary>Settings of the billing account and the webhook endpoint, bound from <c>UsageBilling:Billing</c> by convention.</summary>
public sealed class BillingAccountOptions
{
    /// <summary>The configuration section name the options bind from by convention.</summary>
    public const string SectionName = "UsageBilling:Billing";

    /// <summary>How plans are bought by default: <see cref="SubscribeMode.Api"/> (default) or <see cref="SubscribeMode.Checkout"/>.</summary>
    public SubscribeMode SubscribeWith { get; set; } = SubscribeMode.Api;

    /// <summary>Checkout: where Stripe sends a customer who paid (absolute URL). Required for Checkout unless every call passes one.</summary>
    public Uri? CheckoutSuccessUrl { get; set; }

    /// <summary>Checkout: where Stripe sends a customer who cancelled (absolute URL).</summary>
    public Uri? CheckoutCancelUrl { get; set; }

    /// <summary>Whether cancelling now (and a plan change) credits the unused part of the flat fee (Stripe's <c>prorate</c>). Default <see langword="true"/>.</summary>
    public bool ProrateOnCancel { get; set; } = true;

    /// <summary>How old a webhook's signature timestamp may be. Default 5 minutes (Stripe's own tolerance).</summary>
    public TimeSpan WebhookTolerance { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>The largest webhook body read; a larger one is answered 413 without being read. Default 512 KiB.</summary>
    public int MaxWebhookBodyBytes { get; set; } = 512 * 1024;
}

/// <summary>Fails the start on settings that cannot work.</summary>
internal sealed class BillingAccountOptionsValidator : IValidateOptions<BillingAccountOptions>
{
    public ValidateOptionsResult Validate(string? name, BillingAccountOptions options)
    {
        var errors = new List<string>();
        if (!Enum.IsDefined(options.SubscribeWith))
        {
            errors.Add("UsageBilling:Billing:SubscribeWith must be Api or Checkout.");
        }

        foreach (var (key, url) in new[] { ("CheckoutSuccessUrl", options.CheckoutSuccessUrl), ("CheckoutCancelUrl", options.CheckoutCancelUrl) })
        {
            if (url is not null && (!url.IsAbsoluteUri || url.Scheme is not ("http" or "https")))
            {
                errors.Add($"UsageBilling:Billing:{key} must be an absolute http(s) URL, was '{url}'.");
            }
        }

        if (options.WebhookTolerance < TimeSpan.FromSeconds(1) || options.WebhookTolerance > TimeSpan.FromHours(1))
        {
            errors.Add("UsageBilling:Billing:WebhookTolerance must be between 1 second and 1 hour.");
        }

        if (options.MaxWebhookBodyBytes is < 1024 or > 16 * 1024 * 1024)
        {
            errors.Add("UsageBilling:Billing:MaxWebhookBodyBytes must be between 1024 and 16777216.");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
