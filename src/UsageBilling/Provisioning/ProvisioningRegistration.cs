using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace UsageBilling;

/// <summary>Registers the <see cref="IStripeProvisioner"/>: <c>AddUsageBilling(...).UseStripe(...).AddStripeProvisioner()</c>.</summary>
public static class ProvisioningRegistration
{
    /// <summary>Adds the provisioner; it uses the <see cref="global::Stripe.StripeClient"/> that <c>UseStripe</c> registers.</summary>
    /// <param name="builder">The UsageBilling builder.</param>
    /// <returns>The builder.</returns>
    public static UsageBillingBuilder AddStripeProvisioner(this UsageBillingBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.TryAddSingleton<IStripeProvisioner, StripeProvisioner>();
        return builder;
    }
}
